package supervisor

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/notifytest"
)

// recvDatagram returns the next datagram, failing the test if none arrives
// within d.
func recvDatagram(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	s, err := notifytest.Next(conn, d)
	if err != nil {
		t.Fatalf("no sd_notify datagram within %v: %v", d, err)
	}
	return s
}

func TestNotifierSendsExactDatagrams(t *testing.T) {
	conn := notifytest.Use(t)
	n := NewNotifier(nil)
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"stopping", n.Stopping, "STOPPING=1"},
		{"watchdog", n.Watchdog, "WATCHDOG=1"},
		{"status", func() error { return n.Status("serving 3 doors") }, "STATUS=serving 3 doors"},
		{"status newline", func() error { return n.Status("a\nb") }, "STATUS=a b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatal(err)
			}
			if got := recvDatagram(t, conn, 2*time.Second); got != tc.want {
				t.Fatalf("datagram = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotifierReloadingIsOneDatagramWithMonotonicUsec(t *testing.T) {
	conn := notifytest.Use(t)
	n := NewNotifier(nil)
	before := monotonicUsec(t)
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	got := recvDatagram(t, conn, 2*time.Second)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("datagram = %q, want RELOADING=1 and MONOTONIC_USEC= in one datagram", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC not a number in %q: %v", got, err)
	}
	if usec < before || usec > after {
		t.Fatalf("MONOTONIC_USEC=%d outside the call's window [%d, %d]", usec, before, after)
	}
	// Nothing else may follow: a second datagram would mean the two
	// fields were split, which systemd rejects.
	if extra, err := notifytest.Next(conn, 50*time.Millisecond); err == nil {
		t.Fatalf("unexpected second datagram %q", extra)
	}
}

func TestNotifierWithoutSystemdIsNotAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier(nil)
	if n.Enabled() {
		t.Fatal("Enabled() = true without NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"ready": n.Ready, "reloading": n.Reloading, "stopping": n.Stopping,
		"watchdog": n.Watchdog, "status": func() error { return n.Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
}

func TestNotifierReportsBrokenSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	err := NewNotifier(nil).Ready()
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Ready() to a missing socket = %v, want a wrapped ENOENT", err)
	}
}

func TestNotifierKeepsEnvironment(t *testing.T) {
	conn := notifytest.Use(t)
	n := NewNotifier(nil)
	for i := 0; i < 3; i++ {
		if err := n.Watchdog(); err != nil {
			t.Fatal(err)
		}
		recvDatagram(t, conn, 2*time.Second)
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		t.Fatal("NOTIFY_SOCKET was unset by sending")
	}
}
