package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/rescue"
)

// keeper holds the rescue port's Switch (package rescue's policy) and
// keeps its heartbeat while the daemon is healthy: a hung or dying daemon
// lets it lapse, and the kernel opens the rescue port with no process
// needed. A reload swaps in the Switch of the new config.
type keeper struct {
	log   hclog.Logger
	newFW func(firewall.Kind, firewall.RescueSpec, hclog.Logger) (rescue.Firewall, error) // firewall.NewRescue
	fw    *firewalls                                                                      // the grants' backend, whose family the rescue shares
	now   func() time.Time

	sw atomic.Pointer[rescue.Switch] // the running config's; nil until it is armed
	w  worker
}

// build makes the rescue Switch of cfg, in the family of b, the grants'
// backend, when there is one (so both always agree), else in the config's.
// It changes nothing in the kernel.
func (k *keeper) build(cfg *config.Config, b firewall.Backend) (*rescue.Switch, error) {
	kind, err := firewall.ParseKind(cfg.Options.Firewall)
	if err != nil {
		return nil, err
	}
	if b != nil {
		if bk, err := firewall.ParseKind(b.Name()); err == nil {
			kind = bk
		}
	}
	fw, err := k.newFW(kind, firewall.RescueSpec{Ports: cfg.Options.RescuePorts,
		From: cfg.Options.RescueFrom, After: cfg.Options.RescueAfter}, k.log)
	if err != nil {
		return nil, err
	}
	return rescue.New(fw, k.log), nil
}

// service installs the first config's rescue (or removes a leftover one
// when none is configured), which also closes a rescue port that a
// failure opened, and keeps its heartbeat while healthy says so. Its stop
// ends the heartbeat; when clean says the stop was asked for, it disarms
// the rescue (rescue.Switch.Disarm), so that a planned stop does not open
// it Rescue_After later. After a failure the heartbeat is left to lapse.
func (k *keeper) service(cfg func() *config.Config, healthy func() health, clean func() bool) hook {
	return hook{name: "rescue", start: func(ctx context.Context) error {
		k.arm(ctx, cfg())
		hl := healthy()
		k.w.goRun(ctx, func(ctx context.Context) {
			rescue.Keep(ctx, k.sw.Load, func() (bool, string) {
				ok, stale := hl.Healthy(k.now())
				return ok, strings.Join(stale, ",")
			})
		})
		return nil
	}, stop: func(context.Context) error {
		k.w.stop()
		sw := k.sw.Load()
		if sw == nil || !clean() {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.Disarm(ctx); err != nil {
			return fmt.Errorf("rescue not disarmed, it opens Rescue_After after the stop: %w", err)
		}
		return nil
	}}
}

// arm installs cfg's rescue and sets its heartbeat. A failure is logged,
// not returned: the daemon serves its doors without a rescue port rather
// than not at all.
func (k *keeper) arm(ctx context.Context, cfg *config.Config) {
	sw, err := k.build(cfg, k.fw.backend())
	if err == nil {
		if err = sw.Start(ctx); err == nil {
			k.sw.Store(sw)
			return
		}
	}
	if len(cfg.Options.RescuePorts) > 0 {
		k.log.Error("rescue port not armed: "+err.Error(), "error", err)
	} else {
		k.log.Debug("no rescue configured", "cleanup_error", err)
	}
}

// rescuePlan is the rescue's part of a reload: the new config's Switch,
// or why it could not be made. The rescue never refuses a reload: the
// running Switch stays when the new one fails.
type rescuePlan struct {
	sw  *rescue.Switch
	err error
}

func (k *keeper) prepare(cfg *config.Config, b firewall.Backend) rescuePlan {
	sw, err := k.build(cfg, b)
	return rescuePlan{sw, err}
}

// commit installs the new config's rescue and swaps it in.
func (k *keeper) commit(ctx context.Context, p rescuePlan) {
	err := p.err
	if err == nil {
		err = p.sw.Install(ctx)
	}
	if err != nil {
		k.log.Error("rescue not updated: "+err.Error(), "error", err)
		return
	}
	k.sw.Store(p.sw)
}

// status is the rescue as last read from the kernel; the zero Status
// when none is configured or armed.
func (k *keeper) status() rescue.Status {
	if sw := k.sw.Load(); sw != nil {
		return sw.Last()
	}
	return rescue.Status{}
}

// summary is the rescue's part of STATUS=; "" when none is configured.
func (k *keeper) summary() string {
	if sw := k.sw.Load(); sw != nil && sw.Enabled() {
		return sw.Summary()
	}
	return ""
}
