package eventlog

import (
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/syncbuf"

	"github.com/sesame-knock/sesame/core/event"
)

// fakeSyslog listens on a unixgram socket in a temp dir and points
// dialSyslog at it (the real one dials /dev/log). up=false leaves the
// socket absent until listen is called.
type fakeSyslog struct {
	path string
	conn *net.UnixConn
}

func useFakeSyslog(t *testing.T, up bool) *fakeSyslog {
	t.Helper()
	fs := &fakeSyslog{path: filepath.Join(t.TempDir(), "log")}
	old := dialSyslog
	t.Cleanup(func() {
		dialSyslog = old
		if fs.conn != nil {
			fs.conn.Close()
		}
	})
	dialSyslog = func(tag string) (*syslog.Writer, error) {
		return syslog.Dial("unixgram", fs.path, syslog.LOG_DAEMON|syslog.LOG_NOTICE, tag)
	}
	if up {
		fs.listen(t)
	}
	return fs
}

func (fs *fakeSyslog) listen(t *testing.T) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: fs.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	fs.conn = c
}

// recv returns the datagrams that arrived, waiting up to a deadline for
// the first n and then taking whatever else is already there.
func (fs *fakeSyslog) recv(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		wait := 5 * time.Second
		if len(got) >= n {
			wait = 50 * time.Millisecond // drain: anything extra is a failure
		}
		fs.conn.SetReadDeadline(time.Now().Add(wait))
		k, err := fs.conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return got
			}
			t.Fatal(err)
		}
		got = append(got, string(buf[:k]))
	}
}

func TestSyslog(t *testing.T) {
	useFakeJournald(t, false)
	fs := useFakeSyslog(t, true)
	l, err := New(Options{UseSyslog: true, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("10.0.0.2: ssh: Stage 1", event.KeyKind, event.Stage)
	l.Info("capture: filter installed") // not an event: not sent
	l.Debug("debug event", event.KeyKind, event.Stage)
	l.Error("ssh: command returned non-zero status code (2)", event.KeyKind, event.CommandFailed)
	got := fs.recv(t, 2)
	want := []string{"10.0.0.2: ssh: Stage 1", "ssh: command returned non-zero status code (2)"}
	if len(got) != len(want) {
		t.Fatalf("syslog got %d messages, want %d: %q", len(got), len(want), got)
	}
	for i, m := range got {
		// <daemon(3)*8 + notice(5)> = <29>, then time, tag[pid]: message.
		prefix := "<29>"
		suffix := fmt.Sprintf(" sesamed[%d]: %s\n", os.Getpid(), want[i])
		if !strings.HasPrefix(m, prefix) || !strings.HasSuffix(m, suffix) {
			t.Errorf("syslog message %q, want %q...%q", m, prefix, suffix)
		}
	}
}

// Without a syslog socket, New warns once and carries on; the sink looks
// again at most once a minute and picks syslog up when it appears.
func TestSyslogAbsent(t *testing.T) {
	useFakeJournald(t, false)
	fs := useFakeSyslog(t, false)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var stderr syncbuf.Buffer
	l, err := New(Options{UseSyslog: true, Stderr: &stderr, Now: clock.now})
	if err != nil {
		t.Fatalf("New without syslog: %v", err)
	}
	defer l.Close()
	if n := strings.Count(stderr.String(), "syslog unavailable"); n != 1 {
		t.Fatalf("warned %d times:\n%s", n, stderr.String())
	}
	l.Info("dropped", event.KeyKind, event.Stage)
	fs.listen(t)
	clock.set(clock.now().Add(30 * time.Second))
	l.Info("still dropped: too soon to redial", event.KeyKind, event.Stage)
	clock.set(clock.now().Add(31 * time.Second))
	l.Info("delivered", event.KeyKind, event.Stage)
	got := fs.recv(t, 1)
	if len(got) != 1 || !strings.HasSuffix(got[0], ": delivered\n") {
		t.Fatalf("syslog got %q, want only the line after the redial", got)
	}
	if !strings.Contains(stderr.String(), "syslog: connected") {
		t.Errorf("reconnection not reported:\n%s", stderr.String())
	}
}

// When journald is the syslog socket (/dev/log under systemd) and the
// journald sink is active, UseSyslog sends nothing to it: every line
// would be in the journal twice (issue 18). A notice says so. Without
// journald's socket, or when /dev/log is another daemon's, syslog gets
// knockd's lines as before.
func TestSyslogSkippedWhenItIsJournald(t *testing.T) {
	for _, tt := range []struct {
		name             string
		journald, devLog bool
		wantSyslog       int
		wantNotice       bool
	}{
		{"journald is /dev/log", true, true, 0, true},
		{"another syslog daemon", true, false, 1, false},
		{"no journald", false, false, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fj := useFakeJournald(t, tt.journald)
			fs := useFakeSyslog(t, true)
			old := syslogIsJournald
			t.Cleanup(func() { syslogIsJournald = old })
			syslogIsJournald = func() bool { return tt.devLog }
			var stderr syncbuf.Buffer
			l, err := New(Options{UseSyslog: true, Stderr: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			l.Info("10.0.0.2: ssh: OPEN SESAME", event.KeyKind, event.Open)
			l.Close()
			if got := fs.recv(t, tt.wantSyslog); len(got) != tt.wantSyslog {
				t.Errorf("syslog got %q, want %d lines", got, tt.wantSyslog)
			}
			notice := "UseSyslog: /dev/log is journald's socket"
			if strings.Contains(stderr.String(), notice) != tt.wantNotice {
				t.Errorf("stderr:\n%s", stderr.String())
			}
			if tt.journald {
				var opens, notices int
				for _, e := range fj.take() {
					opens += strings.Count(e.msg, "OPEN SESAME")
					notices += strings.Count(e.msg, notice)
				}
				if opens != 1 || notices != map[bool]int{true: 1, false: 0}[tt.devLog] {
					t.Errorf("journald got %d opens and %d notices", opens, notices)
				}
			}
		})
	}
}
