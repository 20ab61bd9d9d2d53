package supervisor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fastOptions keep restarts quick. The tests run in synctest bubbles:
// time passes only while every goroutine waits, so the timeouts below
// fire only when the supervisor is stuck.
func fastOptions() Options {
	return Options{RestartDelay: time.Millisecond, RestartDelayMax: 5 * time.Millisecond, StopTimeout: 300 * time.Millisecond}
}

// served is a Serve call running in the background.
type served struct {
	done chan struct{} // closed when Serve has returned
	err  error         // Serve's result, valid after done
}

// serveInBackground runs s; the test's cleanup cancels it and checks that
// it returned.
func serveInBackground(t *testing.T, s *Supervisor) (context.CancelFunc, *served) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &served{done: make(chan struct{})}
	go func() {
		r.err = s.Serve(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return cancel, r
}

// beatUntilDone is a healthy component's life: a beat every 10ms until
// ctx ends.
func beatUntilDone(ctx context.Context, beat *Beater) error {
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
			beat.Beat()
		}
	}
}

func waitServe(t *testing.T, r *served) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s")
		return nil
	}
}

func TestSupervisorRestartsPanickingService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New("test", fastOptions())
		var calls atomic.Int32
		running := make(chan struct{})
		s.Add("matcher", time.Second, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			if calls.Add(1) <= 3 {
				panic("matcher bug")
			}
			close(running)
			return beatUntilDone(ctx, beat)
		}))
		cancel, done := serveInBackground(t, s)
		select {
		case <-running:
		case <-done.done:
			t.Fatalf("Serve returned %v before the service ran", done.err)
		case <-time.After(10 * time.Second):
			t.Fatal("service not running after 3 panics")
		}
		if n := calls.Load(); n != 4 {
			t.Fatalf("service started %d times, want 4", n)
		}
		cancel()
		if err := waitServe(t, done); err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	})
}

func TestSupervisorEscalatesRepeatedFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := fastOptions()
		opts.FailureThreshold = 3
		s := New("test", opts)
		var calls atomic.Int32
		boom := errors.New("capture: no such device")
		s.Add("capture", 0, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			calls.Add(1)
			beat.Beat() // nil Beater without a heartbeat: must not panic
			return boom
		}))
		_, done := serveInBackground(t, s)
		err := waitServe(t, done)
		if !errors.Is(err, ErrEscalated) || !errors.Is(err, boom) {
			t.Fatalf("Serve = %v, want ErrEscalated wrapping the last failure", err)
		}
		if n := calls.Load(); n < 4 {
			t.Fatalf("escalated after %d runs, want more than the threshold of 3", n)
		}
	})
}

func TestSupervisorRestartsStaleComponent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New("test", fastOptions())
		var calls atomic.Int32
		firstCancelled := make(chan struct{})
		second := make(chan struct{})
		s.Add("matcher", 100*time.Millisecond, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			if calls.Add(1) == 1 {
				// Hung in a way that still honours cancellation: no beats.
				<-ctx.Done()
				close(firstCancelled)
				return ctx.Err()
			}
			close(second)
			return beatUntilDone(ctx, beat)
		}))
		_, done := serveInBackground(t, s)
		for _, ev := range []struct {
			name string
			ch   chan struct{}
		}{{"stale run cancelled", firstCancelled}, {"component restarted", second}} {
			select {
			case <-ev.ch:
			case <-done.done:
				t.Fatalf("Serve returned %v before %s", done.err, ev.name)
			case <-time.After(10 * time.Second):
				t.Fatalf("timed out waiting for: %s", ev.name)
			}
		}
		// The restarted run beats every 10ms: healthy as soon as it runs.
		synctest.Wait()
		if ok, stale := s.Heartbeats().Healthy(time.Now()); !ok {
			t.Fatalf("stale after the restart: %v", stale)
		}
	})
}

func TestSupervisorEscalatesHungComponent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New("test", fastOptions())
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		s.Add("capture", 100*time.Millisecond, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			<-release // ignores ctx: a wedged read
			return nil
		}))
		_, done := serveInBackground(t, s)
		err := waitServe(t, done)
		if !errors.Is(err, ErrEscalated) || !errors.Is(err, ErrHung) {
			t.Fatalf("Serve = %v, want ErrEscalated wrapping ErrHung", err)
		}
	})
}

func TestSupervisorRestartsComponentThatReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New("test", fastOptions())
		var calls atomic.Int32
		again := make(chan struct{})
		s.Add("executor", 0, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			if calls.Add(1) == 1 {
				return nil
			}
			close(again)
			<-ctx.Done()
			return nil
		}))
		_, done := serveInBackground(t, s)
		select {
		case <-again:
		case <-done.done:
			t.Fatalf("Serve returned %v", done.err)
		case <-time.After(10 * time.Second):
			t.Fatal("a component that returned early was not restarted")
		}
	})
}

func TestSupervisorCancelStopsComponents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New("test", fastOptions())
		stopped := make(chan struct{}, 2)
		started := make(chan struct{}, 2)
		for _, name := range []string{"capture", "matcher"} {
			s.Add(name, time.Second, ServiceFunc(func(ctx context.Context, beat *Beater) error {
				started <- struct{}{}
				<-ctx.Done()
				stopped <- struct{}{}
				return ctx.Err()
			}))
		}
		cancel, done := serveInBackground(t, s)
		for i := 0; i < 2; i++ {
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("components did not start")
			}
		}
		cancel()
		if err := waitServe(t, done); err != nil {
			t.Fatalf("Serve after cancel = %v", err)
		}
		if len(stopped) != 2 {
			t.Fatalf("%d components saw cancellation before Serve returned, want 2", len(stopped))
		}
	})
}

func TestRestartDelay(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 100 * ms}, {2, 200 * ms}, {3, 400 * ms}, {6, 3200 * ms}, {7, 5 * time.Second}, {50, 5 * time.Second}} {
		if got := restartDelay(tc.n, 100*ms, 5*time.Second); got != tc.want {
			t.Errorf("restartDelay(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}
