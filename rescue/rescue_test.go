package rescue

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestDecide(t *testing.T) {
	ok := kernelState{Installed: true, Left: 10 * time.Second}
	lapsed := kernelState{Installed: true}
	held := kernelState{Installed: true, Held: true}
	gone := kernelState{Problems: []string{"flushed"}}
	for _, tc := range []struct {
		name    string
		k       kernelState
		healthy bool
		wasOpen bool
		want    plan
	}{
		{"healthy, closed: refresh", ok, true, false, plan{refresh: true}},
		{"healthy after a lapse: refresh and log close", lapsed, true, true, plan{refresh: true, logClose: reasonHealthy}},
		{"healthy, lapse never seen (frozen): refresh, log close", lapsed, true, false, plan{refresh: true, logClose: reasonLapsed}},
		{"unhealthy, heartbeat still running: wait", ok, false, false, plan{}},
		{"unhealthy, lapsed: log open once", lapsed, false, false, plan{logOpen: reasonUnhealthy + ": capture down"}},
		{"unhealthy, lapsed, logged: nothing", lapsed, false, true, plan{}},
		{"held, healthy: no refresh, log open", held, true, false, plan{logOpen: reasonHeld}},
		{"held, logged: nothing", held, true, true, plan{}},
		{"held, unhealthy: nothing new", held, false, true, plan{}},
		{"flushed, healthy: reinstall and refresh", gone, true, false, plan{install: true, refresh: true}},
		{"flushed, unhealthy: reinstall, open at once", gone, false, false, plan{install: true, logOpen: reasonUnhealthy + ": capture down"}},
		{"flushed while held: reinstall, no refresh", kernelState{Held: true}, true, true, plan{install: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.k, tc.healthy, tc.wasOpen, "capture down"); got != tc.want {
				t.Errorf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestLifecycle walks one daemon life on the fake kernel: start, healthy
// ticks, an unhealthy spell that lets the heartbeat lapse, recovery, an
// admin's hold, and release.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)

	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "install,refresh" {
		t.Errorf("Start on a clean kernel: calls %q, want install,refresh", got)
	}
	if got := ev.take(t); got != "" {
		t.Errorf("Start on a clean kernel logged %q, want no open/close", got)
	}
	if g.sweeps != 1 {
		t.Errorf("Start swept other families %d times, want 1", g.sweeps)
	}
	if st := s.Summary(); !strings.HasPrefix(st, "rescue closed: 22:tcp opens 30s after") {
		t.Errorf("Summary = %q", st)
	}

	step := func(d time.Duration, healthy bool, wantCalls, wantEvents string) {
		t.Helper()
		g.now = g.now.Add(d)
		if err := s.Tick(ctx, healthy, "engine stalled"); err != nil {
			t.Fatal(err)
		}
		if got := g.takeCalls(); got != wantCalls {
			t.Errorf("tick (healthy=%t) calls %q, want %q", healthy, got, wantCalls)
		}
		if got := ev.take(t); got != wantEvents {
			t.Errorf("tick (healthy=%t) events %q, want %q", healthy, got, wantEvents)
		}
	}
	step(10*time.Second, true, "refresh", "")
	step(10*time.Second, false, "", "")
	step(10*time.Second, false, "", "")
	step(10*time.Second, false, "", "warn:rescue-open") // After since the last refresh: lapsed
	if st := s.Summary(); !strings.Contains(st, "rescue OPEN") || !strings.Contains(st, "engine stalled") {
		t.Errorf("Summary while open = %q", st)
	}
	step(10*time.Second, false, "", "")
	step(10*time.Second, true, "refresh", "warn:rescue-close")
	step(10*time.Second, true, "refresh", "")

	if err := s.Open(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "open" {
		t.Errorf("Open calls %q, want open", got)
	}
	if got := ev.take(t); got != "warn:rescue-open" {
		t.Errorf("Open events %q", got)
	}
	step(10*time.Second, true, "", "") // held: the healthy daemon does not refresh
	if st := s.Summary(); !strings.Contains(st, reasonHeld) {
		t.Errorf("Summary while held = %q", st)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "close" {
		t.Errorf("Close calls %q, want close", got)
	}
	if got := ev.take(t); got != "warn:rescue-close" {
		t.Errorf("Close events %q", got)
	}
	step(10*time.Second, true, "refresh", "")
}

// TestLapseBoundary pins the moment: the rescue is open only once the
// heartbeat's time is fully up.
func TestLapseBoundary(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	g.now = g.now.Add(30*time.Second - time.Millisecond)
	if err := s.Tick(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(t); got != "" {
		t.Errorf("1ms before the lapse: events %q", got)
	}
	g.now = g.now.Add(time.Millisecond)
	if err := s.Tick(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	if got := ev.take(t); got != "warn:rescue-open" {
		t.Errorf("at the lapse: events %q, want warn:rescue-open", got)
	}
}

// TestHoldRace: `sesame rescue open` sets the hold between the daemon's
// read and its refresh. The daemon must notice and take its refresh back,
// or the admin's open would silently not happen.
func TestHoldRace(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	g.takeCalls()
	g.onRefresh = func(f *fakeFirewall) { f.held, f.expires, f.onRefresh = true, time.Time{}, nil }
	if err := s.Tick(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "refresh,open" {
		t.Errorf("calls %q, want refresh,open", got)
	}
	if k := g.kernel(); !k.isOpen() {
		t.Errorf("rescue not open after the race: %+v", k)
	}
	if got := ev.take(t); got != "warn:rescue-open" {
		t.Errorf("events %q, want warn:rescue-open", got)
	}
}

// TestStartAfterCrash: ExecStopPost ran `sesame rescue open` (held, no
// heartbeat); the next healthy start releases the hold and closes.
func TestStartAfterCrash(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	g.installed, g.held = true, true
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "close" {
		t.Errorf("calls %q, want close", got)
	}
	if got := ev.take(t); got != "warn:rescue-close" {
		t.Errorf("events %q, want warn:rescue-close", got)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Open || st.Held || st.Left != 30*time.Second {
		t.Errorf("status after start: %+v", st)
	}
}

// TestReloadKeepsQuiet: a Switch made for a reloaded config, finding the
// rescue held open, does not log the open again, and does not refresh.
func TestReloadKeepsQuiet(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	g.installed, g.held = true, true
	if err := s.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Tick(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "" {
		t.Errorf("calls %q, want none", got)
	}
	if got := ev.take(t); got != "" {
		t.Errorf("events %q, want none", got)
	}
}

// TestInstallArms: objects created by Install get a heartbeat at once, so
// a reload that adds the rescue does not open it.
func TestInstallArms(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	if err := s.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "install,refresh" {
		t.Errorf("calls %q, want install,refresh", got)
	}
	if g.kernel().isOpen() {
		t.Error("rescue open after Install")
	}
	if got := ev.take(t); got != "" {
		t.Errorf("events %q", got)
	}
}

// TestFlushedWhileUnhealthy: the objects vanish while the daemon is not
// healthy; putting them back without a heartbeat opens the rescue at once.
func TestFlushedWhileUnhealthy(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	g.takeCalls()
	g.installed, g.expires = false, time.Time{}
	if err := s.Tick(ctx, false, "capture down"); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "install" {
		t.Errorf("calls %q, want install", got)
	}
	if got := ev.take(t); got != "warn:rescue-open" {
		t.Errorf("events %q", got)
	}
}

func TestDisabled(t *testing.T) {
	ctx := context.Background()
	f := &fakeFirewall{}
	s := New(f, nil)
	if s.Enabled() || s.Interval() != 0 || s.Backend() != "" {
		t.Errorf("disabled switch: enabled %t interval %s backend %q", s.Enabled(), s.Interval(), s.Backend())
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Tick(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	if f.sweeps != 1 {
		t.Errorf("Start swept %d times, want 1 (leftovers of an earlier config must go)", f.sweeps)
	}
	if got := f.takeCalls(); got != "" {
		t.Errorf("disabled switch changed the kernel: %q", got)
	}
	if err := s.Open(ctx, ""); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("Open: %v, want ErrNotConfigured", err)
	}
	if err := s.Close(ctx); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("Close: %v, want ErrNotConfigured", err)
	}
	if got := s.Summary(); got != "rescue off" {
		t.Errorf("Summary %q", got)
	}
}

func TestStatusString(t *testing.T) {
	base := Status{Configured: true, Backend: "nftables", Ports: []knock.Port{{Num: 22, Proto: knock.TCP}}, After: 30 * time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*Status)
		want string
	}{
		{"off", func(s *Status) { *s = Status{} }, "rescue off"},
		{"closed", func(s *Status) { s.Installed, s.Left = true, 21*time.Second+333*time.Millisecond },
			"rescue closed: 22:tcp opens 30s after the last heartbeat (21.3s left)"},
		{"open", func(s *Status) { s.Installed, s.Open = true, true }, "rescue OPEN: 22:tcp reachable (no heartbeat)"},
		{"held", func(s *Status) { s.Installed, s.Open, s.Held = true, true, true },
			"rescue OPEN: 22:tcp reachable (" + reasonHeld + ")"},
		{"from", func(s *Status) {
			s.Installed, s.Open, s.From = true, true, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}, "rescue OPEN: 22:tcp from 10.0.0.0/8 reachable (no heartbeat)"},
		{"broken", func(s *Status) { s.Problems = []string{"chain rescue missing"} },
			"rescue NOT INSTALLED (22:tcp, nftables): chain rescue missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := base
			tc.mod(&st)
			if got := st.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestFrozen: SIGSTOP freezes the daemon past the lapse; the kernel opened
// the rescue without anyone seeing it. The first tick after SIGCONT closes
// it and says so.
func TestFrozen(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	g.takeCalls()
	g.now = g.now.Add(45 * time.Second)
	if err := s.Tick(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := g.takeCalls(); got != "refresh" {
		t.Errorf("calls %q, want refresh", got)
	}
	if got := ev.take(t); got != "warn:rescue-close" {
		t.Errorf("events %q, want warn:rescue-close", got)
	}
}

// TestKeep runs the heartbeat loop on the fake kernel, in a bubble whose
// clock only moves when every goroutine waits: Keep ticks every Interval
// while there is a Switch, refreshes while healthy and not while
// unhealthy, follows the Switch a reload swaps in, idles without one, and
// returns when ctx ends.
func TestKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, f, _ := newFakeSwitch(t)
		f.installed = true
		var current atomic.Pointer[Switch]
		var healthy atomic.Bool
		healthy.Store(true)
		asked := 0
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Keep(ctx, current.Load, func() (bool, string) { asked++; return healthy.Load(), "engine stalled" })
		}()

		// No Switch yet: Keep looks every second and asks nothing.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if asked != 0 {
			t.Fatalf("asked %d times without a Switch", asked)
		}
		current.Store(s)
		time.Sleep(time.Second) // Keep's idle wait ends and it sees s
		synctest.Wait()
		if got := f.takeCalls(); got != "refresh" {
			t.Errorf("first tick: calls %q, want refresh", got)
		}
		time.Sleep(3 * s.Interval())
		synctest.Wait()
		if got := f.takeCalls(); got != "refresh,refresh,refresh" {
			t.Errorf("three healthy intervals: calls %q", got)
		}
		healthy.Store(false)
		time.Sleep(3 * s.Interval())
		synctest.Wait()
		if got := f.takeCalls(); got != "" {
			t.Errorf("unhealthy ticks wrote %q, want nothing", got)
		}
		// A reload swaps in another Switch: the next tick is its.
		s2, f2, _ := newFakeSwitch(t)
		f2.installed = true
		healthy.Store(true)
		current.Store(s2)
		time.Sleep(s.Interval())
		synctest.Wait()
		if got, got2 := f.takeCalls(), f2.takeCalls(); got != "" || got2 != "refresh" {
			t.Errorf("after the swap: old switch %q, new %q; want only the new one refreshed", got, got2)
		}
		if asked != 8 {
			t.Errorf("health asked %d times, want once per tick (8)", asked)
		}
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Keep did not return after cancel")
		}
	})
}

// TestDisarm: a clean stop removes the rescue, so a planned stop does not
// open it Rescue_After later; an open one (the daemon was unhealthy)
// closes, logged; one an admin holds stays open; an off Switch does
// nothing.
func TestDisarm(t *testing.T) {
	ctx := context.Background()
	t.Run("armed", func(t *testing.T) {
		s, g, ev := newFakeSwitch(t)
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		g.takeCalls()
		if err := s.Disarm(ctx); err != nil {
			t.Fatal(err)
		}
		if got := g.takeCalls(); got != "remove" {
			t.Errorf("calls %q, want remove", got)
		}
		if got := ev.take(t); got != "" {
			t.Errorf("events %q, want none: it was closed", got)
		}
		g.now = g.now.Add(time.Hour)
		if k := g.kernel(); k.isOpen() || k.Installed {
			t.Errorf("an hour after a clean stop the kernel holds %+v", k)
		}
		// The next start installs it closed.
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if k := g.kernel(); k.isOpen() || !k.Installed {
			t.Errorf("after the next start: %+v", k)
		}
	})
	t.Run("open because unhealthy", func(t *testing.T) {
		s, g, ev := newFakeSwitch(t)
		s.Start(ctx)
		g.now = g.now.Add(31 * time.Second)
		s.Tick(ctx, false, "capture down")
		if got := ev.take(t); got != "warn:rescue-open" {
			t.Fatalf("events %q", got)
		}
		if err := s.Disarm(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ev.take(t); got != "warn:rescue-close" {
			t.Errorf("events %q, want warn:rescue-close", got)
		}
		if k := g.kernel(); k.Installed {
			t.Errorf("kernel %+v", k)
		}
	})
	t.Run("held by an admin", func(t *testing.T) {
		s, g, ev := newFakeSwitch(t)
		s.Start(ctx)
		s.Open(ctx, "")
		ev.take(t)
		g.takeCalls()
		if err := s.Disarm(ctx); err != nil {
			t.Fatal(err)
		}
		if got := g.takeCalls(); got != "" {
			t.Errorf("calls %q: a held rescue was changed", got)
		}
		if k := g.kernel(); !k.isOpen() || !k.Held {
			t.Errorf("held rescue after Disarm: %+v", k)
		}
	})
	t.Run("off", func(t *testing.T) {
		f := &fakeFirewall{}
		if err := New(f, nil).Disarm(ctx); err != nil || f.takeCalls() != "" {
			t.Errorf("off: %v, calls %q", err, f.takeCalls())
		}
	})
}

// TestLateHeartbeat: a refresh that ends more than After after the
// previous one began may have come after the kernel opened the rescue,
// which the tick's read (made before) may not have seen: it is logged
// as rescue-late. On time, or after lapsing on purpose (unhealthy), it
// is not.
func TestLateHeartbeat(t *testing.T) {
	ctx := context.Background()
	s, g, ev := newFakeSwitch(t) // After 30s
	s.now = func() time.Time { return g.now }
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ev.take(t)
	tick := func(healthy bool, wait, refreshTakes time.Duration) string {
		t.Helper()
		g.now = g.now.Add(wait)
		g.onRefresh = func(f *fakeFirewall) { f.now = f.now.Add(refreshTakes) }
		defer func() { g.onRefresh = nil }()
		if err := s.Tick(ctx, healthy, "test"); err != nil {
			t.Fatal(err)
		}
		return ev.take(t)
	}
	if got := tick(true, 10*time.Second, time.Second); got != "" {
		t.Errorf("on time: events %q", got)
	}
	// Read at +20s after the last refresh began (still closed), refresh
	// ends at +31s: the heartbeat may have lapsed in between.
	if got := tick(true, 20*time.Second, 11*time.Second); got != "warn:rescue-late" {
		t.Errorf("a refresh ending 31s after the previous began: events %q, want warn:rescue-late", got)
	}
	if got := tick(true, 10*time.Second, 0); got != "" {
		t.Errorf("back on time: events %q", got)
	}
	// A tick so late that its read saw the lapse: rescue-close says it is
	// back, rescue-late why.
	if got := tick(true, 45*time.Second, 0); got != "warn:rescue-late,warn:rescue-close" {
		t.Errorf("a tick 45s after the last refresh: events %q, want warn:rescue-late,warn:rescue-close", got)
	}
	// Unhealthy: the lapse is meant, and rescue-open/close report it.
	if got := tick(false, 10*time.Second, 0); got != "" {
		t.Errorf("unhealthy, before the lapse: events %q", got)
	}
	if got := tick(false, 25*time.Second, 0); got != "warn:rescue-open" {
		t.Errorf("unhealthy past After: events %q, want warn:rescue-open", got)
	}
	if got := tick(true, 10*time.Second, 0); got != "warn:rescue-close" {
		t.Errorf("healthy again: events %q, want warn:rescue-close only", got)
	}
}
