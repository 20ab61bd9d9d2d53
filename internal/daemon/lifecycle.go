package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// hook pairs a service's start with its stop, as cilium's hive lifecycle
// does. Either may be nil.
type hook struct {
	name  string
	start func(ctx context.Context) error
	stop  func(ctx context.Context) error
}

// lifecycle starts services in the order they were appended and stops
// them in reverse. It is used from one goroutine (Run's).
type lifecycle struct {
	hooks   []hook
	started int // hooks[:started] have started
}

func (l *lifecycle) append(hs ...hook) { l.hooks = append(l.hooks, hs...) }

// start starts the services in order. When one fails, those already
// started are stopped, in reverse, and start returns the failure joined
// with their stop errors; nothing is left running. ctx is handed to every
// start: services that keep goroutines run them until their stop (or
// until ctx ends).
func (l *lifecycle) start(ctx context.Context) error {
	for l.started < len(l.hooks) {
		h := l.hooks[l.started]
		if h.start != nil {
			if err := h.start(ctx); err != nil {
				return errors.Join(err, l.stop(context.WithoutCancel(ctx)))
			}
		}
		l.started++
	}
	return nil
}

// stop stops the started services in reverse order, every one of them
// even when some fail, and returns all their errors. A second call does
// nothing.
func (l *lifecycle) stop(ctx context.Context) error {
	var errs []error
	for ; l.started > 0; l.started-- {
		h := l.hooks[l.started-1]
		if h.stop == nil {
			continue
		}
		if err := h.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", h.name, err))
		}
	}
	return errors.Join(errs...)
}

// worker is a service's goroutine: go runs f until stop cancels f's
// context and waits for it to return (or until the parent context ends).
// A worker that was never started stops at once.
type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *worker) goRun(ctx context.Context, f func(ctx context.Context)) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		f(ctx)
	}()
}

func (w *worker) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
}

// periodic is a service that calls f once at start and then every
// every() (asked again after each call, so a reload can change it) until
// it stops.
func periodic(name string, every func() time.Duration, f func(ctx context.Context)) hook {
	var w worker
	return hook{name: name, start: func(ctx context.Context) error {
		f(ctx)
		w.goRun(ctx, func(ctx context.Context) {
			t := time.NewTimer(every())
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					f(ctx)
					t.Reset(every())
				}
			}
		})
		return nil
	}, stop: func(context.Context) error { w.stop(); return nil }}
}
