package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/internal/configwatch"
)

// configService reloads the config when its file changes and on SIGHUP
// (the unit's ExecReload), one reload at a time: the watcher's goroutine
// makes every reload. Without a watch (the file was unreadable at start,
// or inotify failed) SIGHUP still reloads.
func (d *daemon) configService(hup <-chan os.Signal) hook {
	var watch, signals worker
	return hook{name: "config watcher", start: func(ctx context.Context) error {
		var w *configwatch.Watcher
		if _, sum, err := configwatch.Read(d.opts.ConfigPath); err == nil {
			w, err = configwatch.New(d.opts.ConfigPath, sum, d.applyConfig, configwatch.Options{Logger: d.log.Named("config")})
			if err != nil {
				d.log.Warn("config file not watched; reload with SIGHUP", "error", err)
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
					d.sighup(ctx, w)
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

// sighup re-reads the config and reopens the log file, as knockd does on
// HUP.
func (d *daemon) sighup(ctx context.Context, w *configwatch.Watcher) {
	if err := d.log.Reopen(); err != nil {
		d.log.Error("reopening log file", "error", err)
	}
	if w == nil {
		content, sum, err := configwatch.Read(d.opts.ConfigPath)
		if err != nil {
			d.log.Error("config not reloaded, keeping the running one: "+err.Error(), "error", err)
			return
		}
		d.applyConfig(content, sum)
		return
	}
	changed, err := w.Reload(ctx)
	if err == nil && !changed {
		// knockd logs every HUP; the content is the running config's.
		d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", "SIGHUP", "changed", false)
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
	}
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
	d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", "change")
	return d.reload(ctx, content)
}

// reload parses content and applies it; a refusal is logged and kept for
// STATUS.
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
	rp := d.rescue.prepare(cfg, fw.b)
	// Commit: the firewall, the last step that can fail, then the rest.
	if err := d.fw.commit(ctx, fw); err != nil {
		d.eng.Discard(prep)
		return err
	}
	if fw.fresh {
		d.grants.SetFirewall(fw.b)
	}
	if err := d.eng.Commit(ctx, prep); err != nil {
		d.eng.Discard(prep)
		d.fw.undo(fw, allGuarded(d.config(), d.spa.files()))
		return fmt.Errorf("engine: %w", err)
	}
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
	d.cfg, d.cfgErr = cfg, ""
	d.mu.Unlock()
	d.saveLastGood(content)
	d.log.Info(fmt.Sprintf("config reloaded: %d doors", len(cfg.Doors)), "doors", len(cfg.Doors))
	return nil
}
