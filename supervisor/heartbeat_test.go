package supervisor

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHeartbeatsHealthy(t *testing.T) {
	t0 := time.Now()
	ms := time.Millisecond
	type beat struct {
		name string
		at   time.Duration
	}
	for _, tc := range []struct {
		name      string
		register  map[string]time.Duration // registered at t0
		beats     []beat
		at        time.Duration
		wantStale []string
	}{
		{name: "empty registry is healthy", at: time.Hour},
		{name: "fresh at registration", register: map[string]time.Duration{"capture": 100 * ms}, at: 100 * ms},
		{name: "silent past max", register: map[string]time.Duration{"capture": 100 * ms}, at: 101 * ms, wantStale: []string{"capture"}},
		{name: "beat keeps fresh", register: map[string]time.Duration{"capture": 100 * ms},
			beats: []beat{{"capture", 90 * ms}}, at: 190 * ms},
		{name: "only the silent one is stale",
			register: map[string]time.Duration{"capture": 100 * ms, "matcher": 100 * ms},
			beats:    []beat{{"capture", 150 * ms}}, at: 200 * ms, wantStale: []string{"matcher"}},
		{name: "both stale in registration order",
			register: map[string]time.Duration{"capture": 100 * ms, "matcher": 50 * ms},
			at:       500 * ms, wantStale: []string{"capture", "matcher"}},
		{name: "per-component silence",
			register: map[string]time.Duration{"capture": time.Second, "matcher": 50 * ms},
			at:       60 * ms, wantStale: []string{"matcher"}},
		{name: "unknown name does not count", register: map[string]time.Duration{"capture": 100 * ms},
			beats: []beat{{"ghost", 150 * ms}}, at: 200 * ms, wantStale: []string{"capture"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHeartbeats()
			// Register in a fixed order so the expected order is defined.
			for _, name := range []string{"capture", "matcher"} {
				if d, ok := tc.register[name]; ok {
					h.register(name, d, t0)
				}
			}
			for _, b := range tc.beats {
				if bt, ok := h.snap.Load().byName[b.name]; ok {
					bt.beatAt(t0.Add(b.at))
				}
			}
			ok, stale := h.Healthy(t0.Add(tc.at))
			if ok != (len(tc.wantStale) == 0) || !slices.Equal(stale, tc.wantStale) {
				t.Fatalf("Healthy = %v, %v; want stale %v", ok, stale, tc.wantStale)
			}
		})
	}
}

func TestHeartbeatsReRegisterKeepsIdentity(t *testing.T) {
	h := NewHeartbeats()
	t0 := time.Now()
	a := h.register("matcher", time.Second, t0)
	b := h.register("matcher", 2*time.Second, t0.Add(10*time.Second))
	if a != b {
		t.Fatal("re-registering returned a different Beater")
	}
	if b.MaxSilence() != 2*time.Second {
		t.Fatalf("MaxSilence = %v, want the new 2s", b.MaxSilence())
	}
	if ok, stale := h.Healthy(t0.Add(11 * time.Second)); !ok {
		t.Fatalf("re-registration should count as a beat; stale %v", stale)
	}
	if n := len(h.snap.Load().order); n != 1 {
		t.Fatalf("%d components registered, want 1", n)
	}
}

func TestHeartbeatsUnregister(t *testing.T) {
	h := NewHeartbeats()
	t0 := time.Now()
	h.register("capture", time.Millisecond, t0)
	h.register("matcher", time.Hour, t0)
	h.Unregister("capture")
	h.Unregister("never-registered")
	if ok, stale := h.Healthy(t0.Add(time.Minute)); !ok {
		t.Fatalf("unregistered component still counted: %v", stale)
	}
	if h.Beat("capture") {
		t.Fatal("Beat on an unregistered name reported true")
	}
	if !h.Beat("matcher") {
		t.Fatal("Beat on a registered name reported false")
	}
}

func TestBeatRealClock(t *testing.T) {
	h := NewHeartbeats()
	b := h.Register("capture", time.Hour)
	b.Beat()
	if s := b.Silence(time.Now()); s < 0 || s > time.Minute {
		t.Fatalf("Silence right after Beat = %v", s)
	}
	if b.Stale(time.Now()) {
		t.Fatal("stale right after Beat")
	}
	if !b.Stale(time.Now().Add(2 * time.Hour)) {
		t.Fatal("not stale two hours later")
	}
}

// Beat and Healthy race by design; the race detector checks they are safe.
func TestHeartbeatsConcurrent(t *testing.T) {
	h := NewHeartbeats()
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c", "d"} {
		b := h.Register(name, time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				b.Beat()
				h.Beat(name)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			h.Healthy(time.Now())
			h.Register("late", time.Hour)
		}
	}()
	wg.Wait()
	if ok, stale := h.Healthy(time.Now()); !ok {
		t.Fatalf("stale after concurrent beats: %v", stale)
	}
}

func BenchmarkBeat(b *testing.B) {
	h := NewHeartbeats()
	bt := h.Register("capture", time.Second)
	b.ReportAllocs()
	for b.Loop() {
		bt.Beat()
	}
}

func BenchmarkBeatByName(b *testing.B) {
	h := NewHeartbeats()
	h.Register("capture", time.Second)
	h.Register("matcher", time.Second)
	b.ReportAllocs()
	for b.Loop() {
		h.Beat("matcher")
	}
}
