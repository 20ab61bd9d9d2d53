package supervisor

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// logSink is an hclog destination the test can wait on.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *logSink) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: s, Level: hclog.Trace})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startWatchdog(t *testing.T, h Health, log hclog.Logger) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewWatchdog(NewNotifier(nil), h, log).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("watchdog Run did not return after cancel")
		}
	})
}

func TestWatchdogCadence(t *testing.T) {
	conn := notifySocket(t)
	const interval = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(interval/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	h := NewHeartbeats()
	h.Register("capture", time.Hour)
	start := time.Now()
	startWatchdog(t, h, nil)
	const pings = 6
	for i := 0; i < pings; i++ {
		if got := recvDatagram(t, conn, 5*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d = %q, want WATCHDOG=1", i, got)
		}
	}
	// One ping at start, then one per tick of interval/2: ticks cannot
	// come early, so the last ping cannot precede five half-intervals.
	if el := time.Since(start); el < (pings-1)*interval/2 {
		t.Fatalf("%d pings in %v: faster than every %v", pings, el, interval/2)
	}
}

func TestWatchdogWithholdsPingsWhileStale(t *testing.T) {
	conn := notifySocket(t)
	const interval = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(interval/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	h := NewHeartbeats()
	matcher := h.Register("matcher", 150*time.Millisecond)
	h.Register("capture", time.Hour)

	// The matcher beats from its own goroutine unless paused.
	var paused atomic.Bool
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				if !paused.Load() {
					matcher.Beat()
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })

	var sink logSink
	startWatchdog(t, h, sink.logger())
	for i := 0; i < 3; i++ {
		if got := recvDatagram(t, conn, 5*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("healthy ping %d = %q", i, got)
		}
	}

	paused.Store(true)
	// The watchdog logs when it first withholds a ping; every ping it
	// sent before that is already queued on the socket, so drain them.
	waitFor(t, 5*time.Second, "the watchdog to report the stale matcher", func() bool {
		return strings.Contains(sink.String(), "withholding watchdog ping")
	})
	if line := grepLine(sink.String(), "withholding"); !strings.Contains(line, "matcher") || strings.Contains(line, "capture") {
		t.Fatalf("log does not name the stale component:\n%s", sink.String())
	}
	for {
		if _, err := tryRecv(conn, time.Millisecond); err != nil {
			break
		}
	}
	// Several ping periods pass with no ping while the matcher is hung.
	if got, err := tryRecv(conn, 3*interval); err == nil {
		t.Fatalf("got %q while the matcher was stale", got)
	}

	paused.Store(false)
	if got := recvDatagram(t, conn, 5*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q", got)
	}
	waitFor(t, 5*time.Second, "the recovery log line", func() bool {
		return strings.Contains(sink.String(), "resuming watchdog pings")
	})
}

func TestWatchdogDisabled(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		wantErr         bool
	}{
		{name: "no WATCHDOG_USEC"},
		{name: "for another process", usec: "200000", pid: "1"},
		{name: "malformed", usec: "soon", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := notifySocket(t)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			done := make(chan error, 1)
			go func() {
				done <- NewWatchdog(NewNotifier(nil), NewHeartbeats(), nil).Run(context.Background())
			}()
			select {
			case err := <-done:
				if (err != nil) != tc.wantErr {
					t.Fatalf("Run = %v, want error %v", err, tc.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run kept running although the watchdog is not enabled")
			}
			if got, err := tryRecv(conn, 10*time.Millisecond); err == nil {
				t.Fatalf("sent %q although the watchdog is not enabled", got)
			}
		})
	}
}

// grepLine returns the first line of s containing substr.
func grepLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
