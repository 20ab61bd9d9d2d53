package grant

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Repeat knocks from holders (a replayed sequence) cost no goroutine,
// journal write or firewall call each: extensions are coalesced per
// grant, one write in flight, the latest deadline wins.
func TestRepeatKnocksAreCoalesced(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		d := nativeDoor()
		r.m.Open(d, src4, time.Now())
		r.settle()
		start := time.Now()
		r.advance(time.Second)          // the knocks below are from the last second
		r.j.block = make(chan struct{}) // a slow disk: every extension write hangs
		base := runtime.NumGoroutine()
		const n = 100000
		var last time.Time
		for i := 0; i < n; i++ {
			last = start.Add(time.Duration(i) * time.Microsecond)
			if got := r.m.Open(d, src4, last); got != Extended {
				t.Fatalf("knock %d: %v", i, got)
			}
		}
		r.settle()
		if g := runtime.NumGoroutine() - base; g > 1 {
			t.Errorf("%d goroutines for %d extensions of one grant, want at most 1", g, n)
		}
		r.j.mu.Lock()
		peak := r.j.maxPeak
		r.j.mu.Unlock()
		if peak != 1 {
			t.Errorf("%d journal writes in flight, want 1", peak)
		}
		// A new knocker gets in while the flood's write hangs.
		if got := r.m.Open(d, src6, time.Now()); got != Granted {
			t.Errorf("new knocker during the flood: %v", got)
		}
		r.settle()
		if r.tr.count("fw grant 2001:db8::7") != 1 {
			t.Errorf("new knocker not applied: %q", r.tr.all())
		}
		close(r.j.block)
		r.advance(10 * time.Second) // a write every quarter of the 30 s timeout
		r.j.mu.Lock()
		writes, lastDL := r.j.extends, r.j.lastExtendDeadline
		r.j.mu.Unlock()
		if want := last.Add(30 * time.Second); writes > 2 || !lastDL.Equal(want) {
			t.Errorf("%d extension writes, last deadline %s; want at most 2 and the latest, %s", writes, r.tr.rel(lastDL), r.tr.rel(want))
		}
		if fw := r.tr.count("fw grant 192.0.2.7"); fw > 3 {
			t.Errorf("%d firewall updates for one grant's extensions", fw)
		}
		// Logged: a burst of extension lines, then one summary.
		r.advance(2 * time.Second)
		logs := r.log.String()
		if c := strings.Count(logs, "grant extended until"); c > 10 {
			t.Errorf("%d extension lines for %d extensions", c, n)
		}
		if !strings.Contains(logs, "more grant extensions in the last 10s") {
			t.Errorf("no summary of the held-back extension lines:\n%s", logs)
		}
	})
}

// Many holders flooding at once: one writer per grant at most, however
// many knocks.
func TestFloodFromManyHoldersIsBounded(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		d := nativeDoor()
		srcs := 50
		for i := 0; i < srcs; i++ {
			r.m.Open(d, addr(i), time.Now())
		}
		r.settle()
		start := time.Now()
		r.advance(2 * time.Second)
		r.j.block = make(chan struct{})
		base := runtime.NumGoroutine()
		for k := 0; k < 2000; k++ {
			for i := 0; i < srcs; i++ {
				r.m.Open(d, addr(i), start.Add(time.Duration(k)*time.Millisecond))
			}
		}
		r.settle()
		if g := runtime.NumGoroutine() - base; g > srcs {
			t.Errorf("%d goroutines for %d grants under a flood", g, srcs)
		}
		close(r.j.block)
		r.settle()
	})
}

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }

// A holder re-knocking all the time costs a journal write per quarter of
// its timeout (at least a second apart), and the journal ends up with
// its last deadline; the native grant is renewed long before it lapses.
func TestExtensionWritesScaleWithTheTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout   time.Duration
		maxWrites int
	}{
		{2 * time.Second, 62},         // every second
		{60 * time.Second, 5},         // every 15 s
		{400 * time.Millisecond, 301}, // every 200 ms: half the timeout
	} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T, r *rig) {
				d := nativeDoor()
				d.OpenTimeout = tc.timeout
				r.m.Open(d, src4, time.Now())
				r.settle()
				var last time.Time
				for i := 0; i < 600; i++ { // a knock every 100 ms for a minute
					r.advance(100 * time.Millisecond)
					last = time.Now()
					r.m.Open(d, src4, last)
				}
				r.advance(tc.timeout / 2)
				r.j.mu.Lock()
				writes, lastDL := r.j.extends, r.j.lastExtendDeadline
				r.j.mu.Unlock()
				if writes > tc.maxWrites || !lastDL.Equal(last.Add(tc.timeout)) {
					t.Errorf("%d writes (at most %d), last journaled deadline %s, want %s", writes, tc.maxWrites, r.tr.rel(lastDL), r.tr.rel(last.Add(tc.timeout)))
				}
				if r.tr.count("fw revoke") != 0 {
					t.Error("revoked while re-knocked")
				}
			})
		})
	}
}
