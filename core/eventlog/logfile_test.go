package eventlog

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/syncbuf"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
)

// fakeClock is a settable clock for the LogFile stamps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLogFileFormat(t *testing.T) {
	useFakeJournald(t, false)
	zone := time.FixedZone("CET", 3600)
	clock := &fakeClock{t: time.Date(2026, 3, 7, 9, 5, 59, 0, zone)}
	path := filepath.Join(t.TempDir(), "knockd.log")
	// knockd appends: existing content stays.
	if err := os.WriteFile(path, []byte("[2026-03-06 23:59] shutting down\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{LogFile: path, Now: clock.now, Level: hclog.Error, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	l.Info("starting up, listening on eth0", event.KeyKind, event.Start)
	l.Info("10.0.0.2: ssh: Stage 1", event.KeyKind, event.Stage, "door", "ssh", "source", "10.0.0.2", "stage", 1)
	l.Debug("10.0.0.2: ssh: Stage 2", event.KeyKind, event.Stage) // below Info: not knockd's
	l.Info("capture: filter installed")                           // not an event
	l.Warn("config: reload failed")                               // not a knockd line
	clock.set(time.Date(2026, 12, 31, 23, 59, 0, 0, zone))
	l.Named("grant").Info("10.0.0.2: ssh: OPEN SESAME", event.KeyKind, event.Open)
	l.Info("ssh: running command: iptables -A INPUT -s 10.0.0.2 -j ACCEPT", event.KeyKind, event.Command, "grant_id", "x")
	l.Error("ssh: command returned non-zero status code (1)", event.KeyKind, event.CommandFailed)
	l.Info("evil\n[2026-01-01 00:00] 10.6.6.6: ssh: OPEN SESAME", event.KeyKind, event.Open)
	l.Info("re-reading config file: /etc/knockd.conf", event.KeyKind, event.Reload)

	want := "[2026-03-06 23:59] shutting down\n" +
		"[2026-03-07 09:05] starting up, listening on eth0\n" +
		"[2026-03-07 09:05] 10.0.0.2: ssh: Stage 1\n" +
		"[2026-12-31 23:59] 10.0.0.2: ssh: OPEN SESAME\n" +
		"[2026-12-31 23:59] ssh: running command: iptables -A INPUT -s 10.0.0.2 -j ACCEPT\n" +
		"[2026-12-31 23:59] ssh: command returned non-zero status code (1)\n" +
		"[2026-12-31 23:59] evil\\n[2026-01-01 00:00] 10.6.6.6: ssh: OPEN SESAME\n" +
		"[2026-12-31 23:59] re-reading config file: /etc/knockd.conf\n"
	// No Close before reading: every line must already be on disk.
	if got := readFile(t, path); got != want {
		t.Fatalf("log file:\n%s\nwant:\n%s", got, want)
	}
}

func TestLogFileCreatedPrivate(t *testing.T) {
	useFakeJournald(t, false)
	path := filepath.Join(t.TempDir(), "knockd.log")
	l, err := New(Options{LogFile: path, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %o, want 600", st.Mode().Perm())
	}
}

func TestLogFileReopenAndClose(t *testing.T) {
	useFakeJournald(t, false)
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.log")
	l, err := New(Options{LogFile: path, Now: clock.now, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("one", event.KeyKind, event.Stage)
	// logrotate moves the file away, then signals.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Info("two", event.KeyKind, event.Stage) // still goes to the moved file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Info("three", event.KeyKind, event.Stage)
	if got, want := readFile(t, path+".1"), "[2026-01-02 03:04] one\n[2026-01-02 03:04] two\n"; got != want {
		t.Errorf("rotated file %q, want %q", got, want)
	}
	if got, want := readFile(t, path), "[2026-01-02 03:04] three\n"; got != want {
		t.Errorf("new file %q, want %q", got, want)
	}

	// A failed reopen keeps the old file.
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(dir+".gone", dir) })
	if err := l.Reopen(); err == nil {
		t.Error("Reopen into a missing directory succeeded")
	}
	l.Info("four", event.KeyKind, event.Stage)
	if got := readFile(t, filepath.Join(dir+".gone", "knockd.log")); !strings.HasSuffix(got, "four\n") {
		t.Errorf("after a failed reopen the old file lost the line: %q", got)
	}
	os.Rename(dir+".gone", dir)

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l.Info("five", event.KeyKind, event.Stage) // must not panic or write
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen after Close: %v", err)
	}
	l.Info("six", event.KeyKind, event.Stage)
	if got := readFile(t, path); strings.Contains(got, "five") || strings.Contains(got, "six") {
		t.Errorf("written after Close: %q", got)
	}
}

func TestLogFileOpenError(t *testing.T) {
	useFakeJournald(t, false)
	_, err := New(Options{LogFile: filepath.Join(t.TempDir(), "no", "such", "dir", "knockd.log"), Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "eventlog: open log file") {
		t.Fatalf("New with an unopenable LogFile: %v", err)
	}
}

// The LogFile is never opened through a symlink (at start or at a
// reopen, when logrotate's directory may have been tampered with): the
// target stays untouched.
func TestLogFileRefusesSymlink(t *testing.T) {
	useFakeJournald(t, false)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	path := filepath.Join(dir, "knockd.log")
	os.Symlink(victim, path)
	if _, err := New(Options{LogFile: path, Stderr: io.Discard}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("New with a symlinked LogFile: %v", err)
	}
	os.Remove(path)
	l, err := New(Options{LogFile: path, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Rename(path, path+".1")
	os.Symlink(victim, path)
	if err := l.Reopen(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Reopen onto a symlink: %v", err)
	}
	l.Info("knock", event.KeyKind, event.Stage)
	if got := readFile(t, victim); got != "precious\n" {
		t.Errorf("written through the link: %q", got)
	}
}

// A write failure is reported once on stderr and journald, and recovery
// once; lines written meanwhile are lost, not queued.
func TestLogFileWriteFailureReportedOnce(t *testing.T) {
	fj := useFakeJournald(t, true)
	var stderr syncbuf.Buffer
	path := filepath.Join(t.TempDir(), "knockd.log")
	l, err := New(Options{LogFile: path, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Swap in a read-only descriptor: writes fail with EBADF.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.file.mu.Lock()
	good := l.file.f
	l.file.f = ro
	l.file.mu.Unlock()
	l.Info("lost 1", event.KeyKind, event.Stage)
	l.Info("lost 2", event.KeyKind, event.Stage)
	l.file.mu.Lock()
	l.file.f = good
	l.file.mu.Unlock()
	ro.Close()
	l.Info("kept", event.KeyKind, event.Stage)
	if n := strings.Count(stderr.String(), "log file: write failed"); n != 1 {
		t.Errorf("failure reported %d times on stderr:\n%s", n, stderr.String())
	}
	if !strings.Contains(stderr.String(), "log file: writing works again") {
		t.Errorf("recovery not reported:\n%s", stderr.String())
	}
	var warned int
	for _, e := range fj.take() {
		if strings.HasPrefix(e.msg, "log file: write failed") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("journald got the failure %d times, want 1", warned)
	}
	if got := readFile(t, path); !strings.HasSuffix(got, "] kept\n") || strings.Contains(got, "lost") {
		t.Errorf("log file %q", got)
	}
}

// Routing is by event kind, never by message text: knockd's words
// without a Kind stay out of the LogFile, and a "kind" that is a plain
// string is no Kind. (The LogFile used to take lines by their text.)
func TestLogFileRoutesOnKindNotText(t *testing.T) {
	useFakeJournald(t, false)
	path := filepath.Join(t.TempDir(), "knockd.log")
	l, err := New(Options{LogFile: path, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("starting up, listening on eth0")
	l.Info("shutting down")
	l.Info("re-reading config file: /etc/knockd.conf")
	l.Info("web: running command: echo")
	l.Warn("web: command returned non-zero status code (2)")
	l.Info("10.0.0.2: web: command timeout")
	l.Info("10.0.0.2: web: Stage 1", event.KeyKind, "stage")
	l.Info("shutting down", event.KeyKind, event.Shutdown)
	if got := readFile(t, path); !strings.HasSuffix(got, "] shutting down\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("log file %q, want only the line with a Kind", got)
	}
}
