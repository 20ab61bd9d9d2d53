package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
)

// firewalls holds the backend of native grants: none while no door opens
// ports (Open =), then the one made at start or by the reload that added
// the first such door, kept until the daemon stops. A reload that names
// another Firewall keeps the running backend: the grants in it are
// revoked through it.
type firewalls struct {
	log        hclog.Logger
	newBackend func(firewall.Kind, hclog.Logger) (firewall.Backend, error)

	mu sync.Mutex // guards b
	b  firewall.Backend
}

// backend returns the backend of native grants; nil when there is none.
func (f *firewalls) backend() firewall.Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b
}

// fwPlan is the firewall's part of a config: the backend it needs and the
// ports that backend guards.
type fwPlan struct {
	b       firewall.Backend // nil: no door opens ports, and there is no backend
	guarded []knock.Port
	fresh   bool // b was made for this config and is not running yet
}

// prepare makes what cfg needs of the firewall without changing the
// kernel: the backend, when cfg is the first config with doors that open
// ports or with SPA, which guards guarded. An error means the firewall
// refuses cfg.
func (f *firewalls) prepare(cfg *config.Config, guarded []knock.Port) (fwPlan, error) {
	p := fwPlan{b: f.backend(), guarded: guarded}
	if p.b != nil || (len(p.guarded) == 0 && !cfg.Options.SPA()) {
		return p, nil
	}
	kind, err := firewall.ParseKind(cfg.Options.Firewall)
	if err != nil {
		return fwPlan{}, err
	}
	b, err := f.newBackend(kind, f.log)
	if err != nil {
		return fwPlan{}, fmt.Errorf("firewall backend: %w", err)
	}
	p.b, p.fresh = b, true
	return p, nil
}

// commit sets the plan's guarded ports up in the kernel, the one step of
// a reload that changes the kernel and can still fail. A fresh backend
// becomes the running one once it is set up.
func (f *firewalls) commit(ctx context.Context, p fwPlan) error {
	if p.b == nil {
		return nil
	}
	if err := p.b.Setup(ctx, p.guarded); err != nil {
		return fmt.Errorf("firewall setup: %w", err)
	}
	if p.fresh {
		f.mu.Lock()
		f.b = p.b
		f.mu.Unlock()
		f.log.Info("native grants through "+p.b.Name(), "backend", p.b.Name(), "guarded", knock.FormatSequence(p.guarded))
	}
	return nil
}

// undo takes back a commit whose reload failed later: the running
// config's guarded ports (running) are set up again, and a fresh backend
// is torn down (it would guard ports nobody grants).
func (f *firewalls) undo(p fwPlan, running []knock.Port) {
	if p.b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p.fresh {
		f.mu.Lock()
		f.b = nil
		f.mu.Unlock()
		if err := p.b.Teardown(ctx); err != nil {
			f.log.Error("firewall: removing the backend of a refused reload: "+err.Error(), "error", err)
		}
		return
	}
	if err := p.b.Setup(ctx, running); err != nil {
		f.log.Error("firewall: restoring the running config's guarded ports: "+err.Error(), "error", err)
	}
}

// service sets up the backend of the first config, when a door opens
// ports or SPA is on, guarding the ports guarded returns. Its stop
// removes the backend's objects unless they are kept over a clean stop
// (firewall.StopKeeper): then grants expire in the kernel on their own,
// and the journal puts back the others at the next start.
func (f *firewalls) service(cfg func() *config.Config, guarded func() []knock.Port) hook {
	return hook{name: "firewall", start: func(ctx context.Context) error {
		p, err := f.prepare(cfg(), guarded())
		if err != nil {
			return err
		}
		return f.commit(ctx, p)
	}, stop: func(context.Context) error {
		b := f.backend()
		if b == nil || keepsGrantsWhenStopped(b) {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Teardown(ctx); err != nil {
			return fmt.Errorf("firewall teardown: %w", err)
		}
		return nil
	}}
}

// keepsGrantsWhenStopped says whether b stays in the kernel over a clean
// stop (see firewall.StopKeeper); the others are removed, closing their
// grants until the journal puts them back at the next start.
func keepsGrantsWhenStopped(b firewall.Backend) bool {
	k, ok := b.(firewall.StopKeeper)
	return ok && k.KeepOnStop()
}

// reconcileService compares the native grants with the kernel: once at
// start, before any knock, and every ReconcileInterval while a backend
// runs (a reload may add one, or change the interval).
func (d *daemon) reconcileService() hook {
	return periodic("reconcile", func() time.Duration { return d.config().Options.ReconcileInterval }, d.reconcile)
}

// reconcile puts back the native grants the kernel lost and removes the
// ones it should not hold; nothing without a backend.
func (d *daemon) reconcile(ctx context.Context) {
	b := d.fw.backend()
	if b == nil {
		return
	}
	var rep firewall.Report
	var err error
	d.grants.WithNative(func(want []firewall.Grant) {
		rep, err = firewall.Reconcile(ctx, b, want, d.deps.now())
	})
	if err != nil {
		d.log.Error("reconcile: "+err.Error(), "error", err)
	}
	if rep.Recreated {
		d.log.Warn("reconcile: Sesame's firewall objects were missing (firewall flushed or reloaded) and were recreated", "backend", b.Name())
	}
	for _, g := range rep.Restored {
		d.log.Warn("reconcile: restored grant "+g.String(), event.Event{Kind: event.Grant, Source: g.Src, GrantID: g.ID}.Args()...)
	}
	for _, g := range rep.Removed {
		d.log.Info("reconcile: removed stale grant "+g.String(), event.Event{Kind: event.Expire, Source: g.Src, GrantID: g.ID}.Args()...)
	}
}
