package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/internal/configwatch"
	"github.com/sesame-knock/sesame/internal/control"
)

// configService reloads the config when its file changes, on SIGHUP
// (knockd's way) and when `sesame reload` asks over the control socket
// (the unit's ExecReload), one reload at a time: the watcher's goroutine
// makes every reload. Without a watch (the file was unreadable at start,
// or inotify failed) SIGHUP and sesame reload still reload.
func (d *daemon) configService(hup <-chan os.Signal) hook {
	var watch, signals worker
	return hook{name: "config watcher", start: func(ctx context.Context) error {
		var w *configwatch.Watcher
		if _, sum, err := configwatch.Read(d.opts.ConfigPath); err == nil {
			d.mu.Lock()
			if d.cfgErr != "" {
				// The start runs the last good config, not the file's:
				// the next reload must read the file again, even
				// unchanged.
				sum = [sha256.Size]byte{}
			}
			d.mu.Unlock()
			w, err = configwatch.New(d.opts.ConfigPath, sum, d.applyConfig, configwatch.Options{Logger: d.log.Named("config")})
			if err != nil {
				d.log.Warn("config file not watched; reload with SIGHUP or sesame reload", "error", err)
				w = nil
			} else {
				watch.goRun(ctx, func(ctx context.Context) { w.Run(ctx) })
			}
		}
		signals.goRun(ctx, func(ctx context.Context) {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					d.reloadNow(ctx, w, "SIGHUP")
				case r := <-d.reloads:
					res, err := d.reloadNow(ctx, w, "sesame reload")
					if r.reply != nil {
						r.reply <- reloadReply{res, err}
					}
				}
			}
		})
		return nil
	}, stop: func(context.Context) error {
		signals.stop()
		watch.stop()
		return nil
	}}
}

// reloadRequest is a reload asked for over the control socket; reply,
// when not nil, receives its result.
type reloadRequest struct{ reply chan reloadReply }

type reloadReply struct {
	res control.ReloadResult
	err error
}

// Reload answers the control socket: it asks the config service for a
// reload and, with wait, returns its result.
func (d *daemon) Reload(ctx context.Context, wait bool) (control.ReloadResult, error) {
	r := reloadRequest{}
	if wait {
		r.reply = make(chan reloadReply, 1)
	}
	select {
	case d.reloads <- r:
	case <-ctx.Done():
		return control.ReloadResult{}, ctx.Err()
	}
	if !wait {
		return control.ReloadResult{Queued: true}, nil
	}
	select {
	case rep := <-r.reply:
		return rep.res, rep.err
	case <-ctx.Done():
		return control.ReloadResult{}, fmt.Errorf("reload still running: %w", ctx.Err())
	}
}

// refusedError is a config that applyConfig refused; its text says why,
// with file and line.
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// reloadNow re-reads the config and reopens the log file, as knockd does
// on HUP, and returns what it did: an error when the file could not be
// read or its config was refused (the running config stays).
func (d *daemon) reloadNow(ctx context.Context, w *configwatch.Watcher, trigger string) (control.ReloadResult, error) {
	if err := d.log.Reopen(); err != nil {
		d.log.Error("reopening log file", "error", err)
	}
	d.mu.Lock()
	d.trigger = trigger
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.trigger = ""
		d.mu.Unlock()
	}()
	var changed bool
	var err error
	if w == nil {
		var content []byte
		var sum [sha256.Size]byte
		if content, sum, err = configwatch.Read(d.opts.ConfigPath); err == nil {
			err = d.applyConfig(content, sum)
			changed = err == nil
		}
	} else {
		changed, err = w.Reload(ctx)
	}
	var refused refusedError
	switch {
	case errors.As(err, &refused):
		// applyConfig logged and recorded it.
		return control.ReloadResult{}, refused.err
	case err != nil:
		err = fmt.Errorf("config not reloaded: %w", err)
		d.log.Error(err.Error()+"; keeping the running one", "error", err)
		d.noteReload(trigger, err)
		d.updateStatus()
		return control.ReloadResult{}, err
	case !changed:
		// knockd logs every HUP; the file holds the running config.
		d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", trigger, "changed", false)
		d.notify.Reloading()
		if d.config().Options.SPA() {
			// The SPA files are not watched: a reload re-reads them with
			// the unchanged config (and revokes the grants of SSH keys
			// whose lines went).
			if content, _, rerr := configwatch.Read(d.opts.ConfigPath); rerr == nil {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_ = d.reload(rctx, content)
				cancel()
				d.updateStatus()
			}
		}
		d.notify.Ready()
		d.noteReload(trigger, nil)
		d.updateStatus()
	}
	return control.ReloadResult{Changed: changed, Doors: len(d.config().Doors)}, nil
}

// noteReload records how a reload ended, for sesame status and the
// metrics: err nil means the file's config is in force.
func (d *daemon) noteReload(trigger string, err error) {
	now := d.deps.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reloadSt.At, d.reloadSt.Trigger, d.reloadSt.OK = now, trigger, err == nil
	d.reloadSt.Error = ""
	if err != nil {
		d.reloadSt.Error = err.Error()
		d.cfgErr = err.Error()
		return
	}
	d.cfgErr = ""
}

// applyConfig swaps in new config content (the watcher's OnChange). An
// invalid file keeps the running config; the error, with file and line,
// is logged and shown in STATUS until a good file replaces it.
func (d *daemon) applyConfig(content []byte, _ [sha256.Size]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.notify.Reloading()
	defer func() {
		d.notify.Ready()
		d.updateStatus()
	}()
	d.mu.Lock()
	trigger := d.trigger
	d.mu.Unlock()
	if trigger == "" {
		trigger = "file change"
	}
	d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", trigger)
	err := d.reload(ctx, content)
	d.noteReload(trigger, err)
	if err != nil {
		return refusedError{err}
	}
	return nil
}

// reload parses content and applies it; a refusal is logged and kept
// for STATUS.
func (d *daemon) reload(ctx context.Context, content []byte) error {
	cfg, err := config.LoadBytes(d.opts.ConfigPath, content)
	if err == nil {
		err = d.apply(ctx, cfg, content)
	}
	if err != nil {
		d.mu.Lock()
		d.cfgErr = err.Error()
		d.mu.Unlock()
		d.log.Error("config not reloaded, keeping the running one: "+err.Error(), "error", err)
	}
	return err
}

// apply is the reload of a parsed config, in three phases, so that a
// refused reload changes nothing:
//
//   - validate: the config is parsed and checked (config.LoadBytes); any
//     config `sesame check` accepts gets past here.
//   - prepare: every service readies its part without changing what
//     runs or the kernel: the engine opens new one-time files, the
//     metrics open a new Metrics address (refusing one they cannot
//     listen on), the
//     firewall makes the backend when this is the first config whose
//     doors open ports, the rescue builds its Switch. The engine and the
//     firewall can refuse the config; the rescue never does (its failure
//     is logged, and the running rescue stays).
//   - commit: the firewall sets up the guarded ports first, because it is
//     the one commit that changes the kernel and can still fail; every
//     commit after it cannot fail: the grants take a fresh backend, the
//     engine swaps its doors (it fails only when it cannot be reached
//     before ctx ends, and then the firewall's commit is undone), the
//     rescue installs (logged on failure, as above), and the config and
//     the last good copy are replaced.
func (d *daemon) apply(ctx context.Context, cfg *config.Config, content []byte) error {
	// Prepare.
	prep, err := d.eng.Prepare(ctx, cfg)
	if err != nil {
		return err
	}
	spaFiles, err := loadSPA(cfg)
	if err != nil {
		d.eng.Discard(prep)
		return err
	}
	fw, err := d.fw.prepare(cfg, allGuarded(cfg, spaFiles))
	if err != nil {
		d.eng.Discard(prep)
		return err
	}
	mp, err := d.ms.prepare(cfg)
	if err != nil {
		d.eng.Discard(prep)
		return err
	}
	rp := d.rescue.prepare(cfg, fw.b)
	// Commit: the firewall, the last step that can fail, then the rest.
	if err := d.fw.commit(ctx, fw); err != nil {
		d.eng.Discard(prep)
		d.ms.discard(mp)
		return err
	}
	if fw.fresh {
		d.grants.SetFirewall(d.measuredFirewall(fw.b))
	}
	if err := d.eng.Commit(ctx, prep); err != nil {
		d.eng.Discard(prep)
		d.ms.discard(mp)
		d.fw.undo(fw, allGuarded(d.config(), d.spa.files()))
		return fmt.Errorf("engine: %w", err)
	}
	d.metrics.SetDoors(doorNames(cfg))
	d.ms.commit(mp)
	if err := d.spa.commit(spaFiles, fw.b); err != nil {
		// Only a verifier that cannot be made for files that parsed;
		// the running SPA stays.
		d.log.Error("SPA not reloaded, keeping the running SPA files: "+err.Error(), "error", err)
	} else {
		d.caps.setDatagrams(d.spa.port(), d.spa.datagram)
	}
	for _, w := range cfg.Warnings {
		d.log.Warn(w)
	}
	d.rescue.commit(ctx, rp)
	d.mu.Lock()
	d.cfg = cfg
	refused := d.cfgErr
	d.cfgErr = ""
	d.reloadSt.InForce = d.deps.now()
	d.mu.Unlock()
	d.saveLastGood(content)
	// One line per outcome; a good config after a refused one says that
	// the error logged then (and shown in STATUS=) is gone.
	if refused != "" {
		d.log.Info(fmt.Sprintf("config reloaded: %d doors; valid again, the config error logged before is fixed", len(cfg.Doors)),
			"doors", len(cfg.Doors), "fixed", refused)
		return nil
	}
	d.log.Info(fmt.Sprintf("config reloaded: %d doors", len(cfg.Doors)), "doors", len(cfg.Doors))
	return nil
}
