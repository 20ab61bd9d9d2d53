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

	mu sync.Mutex // guards b and guarding
	b  firewall.Backend
	// guarding is the ports the running backend was last said to drop for
	// everyone without a grant (a firewall.PortGuard); "" for none.
	guarding string
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
	auto    bool // the config says Firewall = auto
}

// prepare makes what cfg needs of the firewall without changing the
// kernel: the backend, when cfg is the first config with doors that open
// ports or with SPA, which guards guarded. An error means the firewall
// refuses cfg.
func (f *firewalls) prepare(cfg *config.Config, guarded []knock.Port) (fwPlan, error) {
	p := fwPlan{b: f.backend(), guarded: guarded}
	if k, err := firewall.ParseKind(cfg.Options.Firewall); err == nil && k == firewall.Auto {
		p.auto = true
	}
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
	f.noteGuarded(p.b, p.guarded, p.auto)
	return nil
}

// noteGuarded says, at warning, which ports a backend that owns their
// drop (nftables) now closes to everyone without a grant: once at start
// and again whenever a reload changes them. On a host without firewall
// rules, Firewall = auto picks nftables, and Sesame is then the only
// thing that closes those ports: an admin must hear it.
func (f *firewalls) noteGuarded(b firewall.Backend, guarded []knock.Port, auto bool) {
	if g, ok := b.(firewall.PortGuard); !ok || !g.GuardsPorts() {
		return
	}
	ports := knock.FormatSequence(guarded)
	f.mu.Lock()
	same := ports == f.guarding
	f.guarding = ports
	f.mu.Unlock()
	if same {
		return
	}
	if len(guarded) == 0 {
		f.log.Info(b.Name()+": Sesame drops no port now: no door opens one", "backend", b.Name(), "guarded", "")
		return
	}
	how := b.Name() + ":"
	if auto {
		how = "Firewall = auto chose " + b.Name() + ":"
	}
	f.log.Warn(fmt.Sprintf("%s Sesame drops new connections to %s from every address without a grant, whatever the host's own rules allow (established connections and loopback pass); they stay dropped while sesamed is stopped, until `sesamed --teardown`",
		how, ports), "backend", b.Name(), "guarded", ports)
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
		f.b, f.guarding = nil, ""
		f.mu.Unlock()
		if err := p.b.Teardown(ctx); err != nil {
			f.log.Error("firewall: removing the backend of a refused reload: "+err.Error(), "error", err)
		}
		return
	}
	if err := p.b.Setup(ctx, running); err != nil {
		f.log.Error("firewall: restoring the running config's guarded ports: "+err.Error(), "error", err)
		return
	}
	// Firewall is not reloaded: the running config's is the plan's.
	f.noteGuarded(p.b, running, p.auto)
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
		if b == nil {
			return nil
		}
		f.mu.Lock()
		guarding := f.guarding
		f.mu.Unlock()
		if keepsGrantsWhenStopped(b) {
			if guarding != "" {
				f.log.Warn(fmt.Sprintf("stopped: %s keeps dropping new connections to %s from every address without a grant while sesamed is stopped; grants expire in the kernel at their deadlines; `sesamed --teardown` removes Sesame's table and the drop with it",
					b.Name(), guarding), "backend", b.Name(), "guarded", guarding)
			}
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Teardown(ctx); err != nil {
			return fmt.Errorf("firewall teardown: %w", err)
		}
		f.log.Warn("stopped: Sesame's "+b.Name()+" chain is removed, so its native grants are closed while sesamed is stopped (the next start restores those still due), and the doors' ports are as your own rules make them",
			"backend", b.Name())
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
	d.noteRepair(rep)
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
