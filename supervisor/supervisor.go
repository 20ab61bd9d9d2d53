package supervisor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/thejerf/suture/v4"
)

// Service is a supervised component, such as the capture worker or the
// matcher/executor. Serve runs until ctx is done and then returns promptly.
// A component added with a maximum silence must call beat.Beat() at least
// that often, also when idle (e.g. on a read timeout); beat is nil for a
// component without a heartbeat, and a nil Beater's Beat does nothing.
//
// Returning before ctx is done, with or without an error, or panicking,
// is a failure: the component is restarted after a backoff.
type Service interface {
	Serve(ctx context.Context, beat *Beater) error
}

// ServiceFunc adapts a function to Service.
type ServiceFunc func(ctx context.Context, beat *Beater) error

// Serve calls f.
func (f ServiceFunc) Serve(ctx context.Context, beat *Beater) error { return f(ctx, beat) }

// Options tunes a Supervisor. Zero values pick the defaults.
type Options struct {
	// Heartbeats is the registry components beat into; share it with the
	// Watchdog. nil means a new registry (see Supervisor.Heartbeats).
	Heartbeats *Heartbeats
	// Logger hears restarts and escalations; nil means hclog.NewNullLogger().
	Logger hclog.Logger
	// FailureThreshold is how many failures, decaying with FailureDecay,
	// are tolerated before escalating to process exit (default 5).
	FailureThreshold float64
	// FailureDecay is the half-life of the failure count (default 30s).
	FailureDecay time.Duration
	// RestartDelay is the wait before the first restart of a failed
	// component; it doubles with each consecutive failure (default 100ms).
	RestartDelay time.Duration
	// RestartDelayMax caps the doubling (default 5s).
	RestartDelayMax time.Duration
	// StopTimeout is how long a cancelled component may take to return.
	// A stale component that overruns it is hung, and the supervisor
	// escalates (default 5s).
	StopTimeout time.Duration
}

// Supervisor runs components, restarts those that fail, panic or stop
// beating, and escalates when restarting does not help: too many failures
// within the decay window, or a stale component that does not return after
// its context is cancelled (its goroutine may hold the capture socket or a
// lock, so it cannot be replaced in-process). On escalation Serve returns
// an error wrapping ErrEscalated; the daemon should exit non-zero so that
// systemd (Restart=on-failure) starts a fresh process.
//
// Restarting is suture/v4's job; this type adds heartbeat checks, restart
// backoff and escalation. mu guards cancel and escalated.
type Supervisor struct {
	name string
	opts Options
	hb   *Heartbeats
	log  hclog.Logger
	tree *suture.Supervisor

	mu          sync.Mutex
	cancel      context.CancelFunc // cancels the running Serve; nil outside it
	escalated   error              // first escalation, wrapped in ErrEscalated
	lastFailure error              // most recent component failure, for the escalation message
}

// New returns a Supervisor named name (used in logs).
func New(name string, opts Options) *Supervisor {
	if opts.Heartbeats == nil {
		opts.Heartbeats = NewHeartbeats()
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.FailureThreshold <= 0 {
		opts.FailureThreshold = 5
	}
	if opts.FailureDecay <= 0 {
		opts.FailureDecay = 30 * time.Second
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = 100 * time.Millisecond
	}
	if opts.RestartDelayMax <= 0 {
		opts.RestartDelayMax = 5 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 5 * time.Second
	}
	s := &Supervisor{name: name, opts: opts, hb: opts.Heartbeats, log: opts.Logger.With("supervisor", name)}
	s.tree = suture.New(name, suture.Spec{
		EventHook:        s.event,
		FailureThreshold: opts.FailureThreshold,
		FailureDecay:     opts.FailureDecay.Seconds(),
		// Suture pauses the tree for FailureBackoff past the threshold;
		// the hook escalates first, so the pause never runs its course.
		FailureBackoff: time.Minute,
		// Components are given StopTimeout to return; give the wrapper
		// a little longer so suture does not report it as leaked first.
		Timeout: opts.StopTimeout + time.Second,
	})
	return s
}

// Heartbeats returns the registry the supervised components beat into.
func (s *Supervisor) Heartbeats() *Heartbeats { return s.hb }

// Add supervises svc under name. With maxSilence > 0 the component is
// registered in Heartbeats and restarted when it goes longer than that
// without beating; with 0 it has no heartbeat. Add may be called before or
// while Serve runs; names must be unique.
func (s *Supervisor) Add(name string, maxSilence time.Duration, svc Service) {
	c := &component{s: s, name: name, svc: svc, maxSilence: maxSilence}
	if maxSilence > 0 {
		c.beat = s.hb.Register(name, maxSilence)
	}
	s.tree.Add(c)
}

// Serve runs the components until ctx is done (then it returns nil once
// they have stopped, or StopTimeout has passed for those that did not) or
// until it escalates (then it returns an error wrapping ErrEscalated and
// the cause: ErrHung, or the last component failure).
func (s *Supervisor) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	err := s.tree.Serve(ctx)
	s.mu.Lock()
	s.cancel = nil
	esc := s.escalated
	s.mu.Unlock()
	if esc != nil {
		return esc
	}
	if errors.Is(err, context.Canceled) || err == nil {
		return nil
	}
	return fmt.Errorf("supervisor %s: %w", s.name, err)
}

// escalate records cause as the reason to exit and stops the tree.
func (s *Supervisor) escalate(cause error) {
	s.mu.Lock()
	if s.escalated == nil {
		s.escalated = fmt.Errorf("supervisor %s: %w: %w", s.name, ErrEscalated, cause)
		s.log.Error("escalating to process exit", "cause", cause)
	}
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// event receives suture's events on its supervisor goroutine; it must not
// block.
func (s *Supervisor) event(e suture.Event) {
	switch e := e.(type) {
	case suture.EventBackoff:
		s.mu.Lock()
		last := s.lastFailure
		s.mu.Unlock()
		s.escalate(fmt.Errorf("more than %v component failures within their %v half-life, last: %w",
			s.opts.FailureThreshold, s.opts.FailureDecay, last))
	case suture.EventServiceTerminate:
		s.log.Warn("component failed", "component", e.ServiceName, "error", e.Err,
			"failures", fmt.Sprintf("%.1f/%v", e.CurrentFailures, e.FailureThreshold), "restarting", e.Restarting)
	case suture.EventServicePanic:
		// Components' panics are recovered in component.run; this is
		// the wrapper itself.
		s.log.Error("supervisor wrapper panicked", "component", e.ServiceName, "panic", e.PanicMsg, "stack", e.Stacktrace)
	case suture.EventStopTimeout:
		s.log.Error("component did not stop in time", "component", e.ServiceName)
	case suture.EventResume:
		s.log.Info("resuming after backoff")
	}
}

func (s *Supervisor) noteFailure(err error) {
	s.mu.Lock()
	s.lastFailure = err
	s.mu.Unlock()
}

// component adapts a Service to suture: backoff before restarts, a fresh
// beat on start, heartbeat checks, panic recovery, hang detection. Suture
// calls Serve from one goroutine at a time, which owns consecutive.
type component struct {
	s          *Supervisor
	name       string
	svc        Service
	maxSilence time.Duration
	beat       *Beater // nil without a heartbeat

	consecutive int // failures since the component last ran long enough
}

// String names the component in suture's events.
func (c *component) String() string { return c.name }

func (c *component) Serve(ctx context.Context) error {
	if c.consecutive > 0 {
		d := restartDelay(c.consecutive, c.s.opts.RestartDelay, c.s.opts.RestartDelayMax)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	c.beat.Beat() // a (re)started component starts fresh
	start := time.Now()
	err := c.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: not a failure
	}
	if errors.Is(err, suture.ErrTerminateSupervisorTree) {
		return err
	}
	// A component that ran well for a while starts its backoff over.
	if time.Since(start) > c.s.opts.RestartDelayMax*4 {
		c.consecutive = 0
	}
	c.consecutive++
	err = fmt.Errorf("component %s: %w", c.name, err)
	c.s.noteFailure(err)
	return err
}

// run runs the Service in its own goroutine, so that a hung one can be
// abandoned, and watches its heartbeat.
func (c *component) run(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		done <- c.svc.Serve(cctx, c.beat)
	}()

	var check <-chan time.Time
	if c.beat != nil {
		t := time.NewTicker(max(c.maxSilence/4, 10*time.Millisecond))
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case err := <-done:
			if err == nil && ctx.Err() == nil {
				err = errors.New("returned while the supervisor was running")
			}
			return err
		case <-ctx.Done():
			cancel()
			if !c.waitStopped(done) {
				c.s.log.Error("component did not stop on shutdown, abandoning it", "component", c.name, "timeout", c.s.opts.StopTimeout)
			}
			return ctx.Err()
		case now := <-check:
			if !c.beat.Stale(now) {
				continue
			}
			silence := c.beat.Silence(now)
			c.s.log.Warn("component stopped beating, restarting it", "component", c.name, "silent_for", silence, "max_silence", c.maxSilence)
			cancel()
			select {
			case err := <-done:
				return fmt.Errorf("%w: silent for %v (it then returned: %v)", ErrStale, silence, err)
			case <-time.After(c.s.opts.StopTimeout):
			}
			hung := fmt.Errorf("component %s: %w within %v of cancellation, after %v without a heartbeat", c.name, ErrHung, c.s.opts.StopTimeout, silence)
			c.s.escalate(hung)
			return fmt.Errorf("%w: %w", suture.ErrTerminateSupervisorTree, hung)
		}
	}
}

// waitStopped waits up to StopTimeout for the Service to return.
func (c *component) waitStopped(done <-chan error) bool {
	t := time.NewTimer(c.s.opts.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// restartDelay is base doubled per consecutive failure after the first,
// capped at most.
func restartDelay(consecutive int, base, most time.Duration) time.Duration {
	d := base
	for i := 1; i < consecutive && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}
