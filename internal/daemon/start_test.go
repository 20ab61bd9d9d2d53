package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/preflight"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// runUntilReady runs the daemon on conf until it is ready (then stops it
// and returns nil) or returns an error; the daemon's output is returned.
func runUntilReady(t *testing.T, dir, conf string, opts Options) (string, error) {
	t.Helper()
	path := filepath.Join(dir, "sesame.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer
	opts.ConfigPath, opts.StateDir, opts.Stderr = path, filepath.Join(dir, "state"), &stderr
	if opts.Interfaces == nil {
		opts.Interfaces = []string{"lo"}
	}
	notify := notifytest.Use(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	dp := fakeDeps(nil, make(chan *fakeCapture, 1))
	dp.listen = control.Listen
	opts.Socket = filepath.Join(dir, "ctl.sock")
	go func() { done <- run(ctx, opts, dp) }()
	ready := make(chan struct{})
	go func() {
		for {
			s, err := notifytest.Next(notify, 60*time.Second)
			if err != nil {
				return
			}
			if strings.Contains(s, "READY=1") {
				close(ready)
				return
			}
		}
	}()
	select {
	case err := <-done:
		return stderr.String(), err
	case <-ready:
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("stopping: %v", err)
		}
		return stderr.String(), nil
	case <-time.After(60 * time.Second):
		t.Fatalf("neither READY=1 nor an error:\n%s", stderr.String())
	}
	return "", nil
}

// The start refuses what `sesame check` refuses, with the check's words,
// file and line (issue 18): a LogFile or PidFile in a directory that
// does not exist, a PidFile that is a symbolic link.
func TestStartRefusesWhatTheCheckRefuses(t *testing.T) {
	door := "[d]\n\tsequence = 7000\n"
	tests := []struct {
		name, conf string
		setup      func(dir string)
		opts       Options
		want       string // in the error; {{CONF}} is the config's path
	}{
		{name: "LogFile in a missing directory", conf: "[options]\n\tLogFile = /nonexistent/dir/k.log\n" + door,
			want: "{{CONF}}:2: LogFile /nonexistent/dir/k.log: directory /nonexistent/dir does not exist"},
		{name: "PidFile in a missing directory", conf: "[options]\n\tPidFile = /nonexistent/dir/k.pid\n" + door,
			want: "{{CONF}}:2: PidFile /nonexistent/dir/k.pid: directory /nonexistent/dir does not exist"},
		{name: "PidFile a symbolic link", conf: "[options]\n\n\tPidFile = {{DIR}}/link.pid\n" + door,
			setup: func(dir string) { os.Symlink(filepath.Join(dir, "elsewhere"), filepath.Join(dir, "link.pid")) },
			want:  "{{CONF}}:3: PidFile {{DIR}}/link.pid is a symbolic link"},
		{name: "-p in a missing directory", conf: door, opts: Options{PidFile: "/nonexistent/dir/k.pid"},
			want: "command line: -p /nonexistent/dir/k.pid: PidFile /nonexistent/dir/k.pid: directory /nonexistent/dir does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(dir)
			}
			conf := strings.ReplaceAll(tt.conf, "{{DIR}}", dir)
			out, err := runUntilReady(t, dir, conf, tt.opts)
			path := filepath.Join(dir, "sesame.conf")
			want := strings.NewReplacer("{{CONF}}", path, "{{DIR}}", dir).Replace(tt.want)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("start: %v\nwant an error with %q; output:\n%s", err, want, out)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("%v is not located (*config.Error)", err)
			}
			// The check says the same.
			_, rep := preflight.Load(context.Background(), path, preflight.Options{PidFile: tt.opts.PidFile})
			if cerr := rep.Err(); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("the check says %v,\nthe start %v", cerr, err)
			}
		})
	}
}

// A PidFile that only the start finds unwritable (preflight passed:
// the file is created between the check and the write) still stops the
// start, located.
func TestStartRefusesAPidFileItCannotWrite(t *testing.T) {
	dir := t.TempDir()
	conf := "[options]\n\tPidFile = " + filepath.Join(dir, "k.pid") + "\n[d]\n\tsequence = 7000\n"
	path := filepath.Join(dir, "sesame.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "k.pid"), 0o700) // not a regular file
	d := &daemon{cfg: cfg}
	err = d.pidFileService().start(context.Background())
	if want := path + ":2: pid file"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("start: %v, want %q", err, want)
	}
}

// READY=1 means serving what exists (issue 18): an interface that is not
// there yet does not hold it back, and it is named at warning and shown
// as waiting in STATUS=.
func TestReadyWhileWaitingForAnInterface(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.conf")
	os.WriteFile(path, []byte("[d]\n\tsequence = 7000\n"), 0o600)
	var stderr syncbuf.Buffer
	opts := Options{ConfigPath: path, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "ctl.sock"),
		Interfaces: []string{"lo", "later0"}, Stderr: &stderr}
	dp := fakeDeps(nil, make(chan *fakeCapture, 1))
	dp.listen = control.Listen
	fakeOpen := dp.openCapture
	dp.openCapture = func(iface string, spec capture.FilterSpec) (handle, error) {
		if iface == "later0" {
			return nil, errors.New("capture: open later0: no such device")
		}
		return fakeOpen(iface, spec)
	}
	notify := notifytest.Use(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts, dp) }()
	ready, status := false, ""
	for status == "" {
		s := nextDatagram(t, notify)
		switch {
		case strings.Contains(s, "READY=1"):
			ready = true
		case ready && strings.HasPrefix(s, "STATUS="):
			status = s
		}
	}
	if want := "lo (up), later0 (waiting: capture: open later0: no such device)"; !strings.Contains(status, want) {
		t.Errorf("%s\nwant it to show %q", status, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := stderr.String()
	var warned int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "later0") && !strings.Contains(l, "[WARN]") && !strings.Contains(l, "[DEBUG]") && !strings.Contains(l, "starting up, listening on") {
			t.Errorf("later0 logged above or below warning: %s", l)
		}
		if strings.Contains(l, "[WARN]") && strings.Contains(l, "ready without a capture on later0 (capture: open later0: no such device)") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("the waiting interface warned %d times, want once:\n%s", warned, out)
	}
}
