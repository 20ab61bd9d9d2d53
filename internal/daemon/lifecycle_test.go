package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// recorder names the hooks as they run.
type recorder []string

func (r *recorder) hook(name string, startErr, stopErr error) hook {
	return hook{name: name,
		start: func(context.Context) error { *r = append(*r, "start "+name); return startErr },
		stop:  func(context.Context) error { *r = append(*r, "stop "+name); return stopErr }}
}

func TestLifecycleStartsInOrderStopsInReverse(t *testing.T) {
	var r recorder
	var l lifecycle
	l.append(r.hook("journal", nil, nil), r.hook("firewall", nil, errors.New("nft: busy")),
		hook{name: "no stop", start: func(context.Context) error { r = append(r, "start no stop"); return nil }},
		r.hook("engine", nil, errors.New("files still open")))
	if err := l.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := l.stop(context.Background())
	want := "start journal,start firewall,start no stop,start engine,stop engine,stop firewall,stop journal"
	if got := strings.Join(r, ","); got != want {
		t.Errorf("ran %s\nwant %s", got, want)
	}
	// Every stop error is returned, none dropped, each naming its service.
	if err == nil || !strings.Contains(err.Error(), "stop engine: files still open") || !strings.Contains(err.Error(), "stop firewall: nft: busy") {
		t.Errorf("stop = %v", err)
	}
	if err := l.stop(context.Background()); err != nil || len(r) != 7 {
		t.Errorf("a second stop ran hooks again: %v %v", err, r)
	}
}

// A service that cannot start stops those started before it, in reverse,
// and its error comes back with theirs.
func TestLifecycleFailedStartStopsWhatStarted(t *testing.T) {
	var r recorder
	var l lifecycle
	l.append(r.hook("journal", nil, nil), r.hook("firewall", nil, errors.New("teardown failed")),
		r.hook("engine", errors.New("one-time file: no such file"), nil), r.hook("captures", nil, nil))
	err := l.start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "one-time file") || !strings.Contains(err.Error(), "stop firewall: teardown failed") {
		t.Errorf("start = %v", err)
	}
	want := "start journal,start firewall,start engine,stop firewall,stop journal"
	if got := strings.Join(r, ","); got != want {
		t.Errorf("ran %s\nwant %s", got, want)
	}
	if err := l.stop(context.Background()); err != nil || len(r) != 5 {
		t.Errorf("stop after a failed start ran hooks again: %v %v", err, r)
	}
}

// A periodic service runs at start, then every every(), asked anew after
// each run (a reload changes ReconcileInterval), and not after its stop.
func TestPeriodic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var runs []time.Duration
		every := 5 * time.Second
		h := periodic("reconcile", func() time.Duration { return every }, func(context.Context) {
			runs = append(runs, time.Since(start))
			every = 2 * time.Second
		})
		if err := h.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9*time.Second + time.Millisecond)
		synctest.Wait()
		if err := h.stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		want := []time.Duration{0, 2 * time.Second, 4 * time.Second, 6 * time.Second, 8 * time.Second}
		if !slices.Equal(runs, want) {
			t.Errorf("ran at %v, want %v", runs, want)
		}
	})
}
