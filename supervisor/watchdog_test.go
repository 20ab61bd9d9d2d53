package supervisor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// pings records the watchdog's pings, at bubble time.
type pings struct {
	mu sync.Mutex
	at []time.Time
}

func (p *pings) ping() error {
	p.mu.Lock()
	p.at = append(p.at, time.Now())
	p.mu.Unlock()
	return nil
}

func (p *pings) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.at)
}

// startWatchdog runs a watchdog whose pings p records, until the test
// ends; call it inside a synctest bubble.
func startWatchdog(t *testing.T, h Health, log hclog.Logger, p *pings) {
	t.Helper()
	w := NewWatchdog(NewNotifier(nil), h, log)
	w.ping = p.ping
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestWatchdogCadence(t *testing.T) {
	const interval = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(interval/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	synctest.Test(t, func(t *testing.T) {
		h := NewHeartbeats()
		h.Register("capture", time.Hour)
		var p pings
		start := time.Now()
		startWatchdog(t, h, nil, &p)
		time.Sleep(5*interval/2 + interval/4)
		synctest.Wait()
		// One ping at start, then one per half interval.
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.at) != 6 {
			t.Fatalf("%d pings in %v, want 6", len(p.at), 5*interval/2+interval/4)
		}
		for i, at := range p.at {
			if want := start.Add(time.Duration(i) * interval / 2); !at.Equal(want) {
				t.Errorf("ping %d at +%v, want +%v", i, at.Sub(start), want.Sub(start))
			}
		}
	})
}

func TestWatchdogWithholdsPingsWhileStale(t *testing.T) {
	const interval = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(interval/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", "")
	synctest.Test(t, func(t *testing.T) {
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

		var sink syncbuf.Buffer
		var p pings
		startWatchdog(t, h, hclog.New(&hclog.LoggerOptions{Output: &sink, Level: hclog.Trace}), &p)
		time.Sleep(interval + interval/4) // pings at 0, 100 and 200ms
		synctest.Wait()
		if n := p.count(); n != 3 {
			t.Fatalf("%d healthy pings, want 3", n)
		}

		paused.Store(true)
		// Stale from 150ms after the last beat: the next tick after that
		// withholds its ping and says so, naming the stale component.
		time.Sleep(3 * interval)
		synctest.Wait()
		line := grepLine(sink.String(), "withholding watchdog ping")
		if line == "" || !strings.Contains(line, "matcher") || strings.Contains(line, "capture") {
			t.Fatalf("log does not name the stale component:\n%s", sink.String())
		}
		withheld := p.count()
		time.Sleep(3 * interval)
		synctest.Wait()
		if n := p.count(); n != withheld {
			t.Fatalf("%d pings while the matcher was stale", n-withheld)
		}

		paused.Store(false)
		time.Sleep(interval)
		synctest.Wait()
		if p.count() == withheld {
			t.Fatal("no ping after recovery")
		}
		if !strings.Contains(sink.String(), "resuming watchdog pings") {
			t.Fatalf("recovery not logged:\n%s", sink.String())
		}
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
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			synctest.Test(t, func(t *testing.T) {
				var p pings
				w := NewWatchdog(NewNotifier(nil), NewHeartbeats(), nil)
				w.ping = p.ping
				done := make(chan error, 1)
				go func() { done <- w.Run(context.Background()) }()
				synctest.Wait()
				select {
				case err := <-done:
					if (err != nil) != tc.wantErr {
						t.Fatalf("Run = %v, want error %v", err, tc.wantErr)
					}
				default:
					t.Fatal("Run kept running although the watchdog is not enabled")
				}
				if n := p.count(); n != 0 {
					t.Fatalf("%d pings although the watchdog is not enabled", n)
				}
			})
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
