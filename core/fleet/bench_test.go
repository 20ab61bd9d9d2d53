package fleet

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// arrivals is a consumer that notes when each grant arrived.
type arrivals struct {
	mu sync.Mutex // guards at
	at map[string]time.Time
	ch chan string
}

func (a *arrivals) FleetRevision() (int64, error) { return 0, nil }
func (a *arrivals) FleetSnapshot(_ int64, live []Grant) {
	for _, g := range live {
		a.arrived(g.ID)
	}
}
func (a *arrivals) FleetChanges(_ int64, evs []Event) {
	for _, e := range evs {
		if e.Kind == Put {
			a.arrived(e.ID)
		}
	}
}

func (a *arrivals) arrived(id string) {
	a.mu.Lock()
	a.at[id] = time.Now()
	a.mu.Unlock()
	select {
	case a.ch <- id:
	default: // the waiter checks the map anyway
	}
}

// BenchmarkPropagation publishes grants one at a time on one node of a
// three-member etcd (Debian's 3.4, loopback) and measures how long each
// takes to reach three watching nodes (each starting on another
// member): from the call to Publish to the Consumer's FleetChanges.
// Run: go test -run '^$' -bench Propagation -benchtime 200x ./core/fleet/
func BenchmarkPropagation(b *testing.B) {
	c := startCluster(b, 3)
	eps := c.Endpoints()
	pub := newFleet(b, config("g", "origin", eps))
	names := []string{"w1", "w2", "w3"}
	var ws []*arrivals
	for i, name := range names {
		a := &arrivals{at: make(map[string]time.Time), ch: make(chan string, 1024)}
		ws = append(ws, a)
		order := append(append([]string(nil), eps[i:]...), eps[:i]...)
		f, err := New(config("g", name, order), Options{Consumer: a, Store: a})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done; f.Close() })
	}
	ctx := context.Background()
	lat := make([][]time.Duration, len(ws))
	// One grant before timing, so every watcher is connected.
	warm := func(g Grant) {
		for _, a := range ws {
			waitArrival(b, a, g.ID)
		}
	}
	g := testGrant(time.Hour)
	if err := pub.Publish(ctx, g); err != nil {
		b.Fatal(err)
	}
	warm(g)
	b.ResetTimer()
	for range b.N {
		g := testGrant(time.Hour)
		start := time.Now()
		if err := pub.Publish(ctx, g); err != nil {
			b.Fatal(err)
		}
		for i, a := range ws {
			waitArrival(b, a, g.ID)
			a.mu.Lock()
			lat[i] = append(lat[i], a.at[g.ID].Sub(start))
			a.mu.Unlock()
		}
	}
	b.StopTimer()
	var all []time.Duration
	fmt.Fprintf(os.Stdout, "\npropagation, %d grants, Publish on one node to FleetChanges on each watcher (3-member etcd 3.4 on loopback)\n", b.N)
	fmt.Fprintf(os.Stdout, "%-8s %10s %10s %10s\n", "watcher", "p50", "p99", "max")
	for i, l := range lat {
		all = append(all, l...)
		p50, p99, mx := percentiles(l)
		fmt.Fprintf(os.Stdout, "%-8s %10s %10s %10s\n", names[i], p50, p99, mx)
	}
	p50, p99, mx := percentiles(all)
	fmt.Fprintf(os.Stdout, "%-8s %10s %10s %10s\n", "all", p50, p99, mx)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

func waitArrival(b *testing.B, a *arrivals, id string) {
	t := time.NewTimer(settle)
	defer t.Stop()
	for {
		a.mu.Lock()
		_, ok := a.at[id]
		a.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-a.ch:
		case <-t.C:
			b.Fatalf("grant %s did not arrive within %s", id, settle)
		}
	}
}

func percentiles(d []time.Duration) (p50, p99, max time.Duration) {
	if len(d) == 0 {
		return
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50).Round(time.Microsecond), at(0.99).Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond)
}
