package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// Health is what the watchdog consults before each ping. *Heartbeats
// implements it.
type Health interface {
	Healthy(now time.Time) (ok bool, stale []string)
}

// Watchdog pings systemd's service watchdog (WATCHDOG=1) at half the
// interval systemd asked for, but only while every component is healthy:
// a hung component makes it withhold pings, so systemd kills and restarts
// the process (SIGABRT, SERVICE_RESULT=watchdog). Its state is owned by the
// goroutine running Run.
type Watchdog struct {
	ping   func() error // the Notifier's Watchdog
	health Health
	log    hclog.Logger

	// Owned by the Run goroutine.
	lastStale []string // stale set last logged; nil while healthy
}

// NewWatchdog returns a watchdog that pings through n while h is healthy.
// log (nil means hclog.NewNullLogger()) hears which components are stale.
func NewWatchdog(n *Notifier, h Health, log hclog.Logger) *Watchdog {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Watchdog{ping: n.Watchdog, health: h, log: log}
}

// Run pings until ctx is done, then returns nil. It returns nil at once
// when systemd has not enabled the watchdog for this process (no
// WATCHDOG_USEC, or WATCHDOG_PID names another process), and an error when
// WATCHDOG_USEC is malformed. Failed sends are logged, not returned:
// there is no one else to tell, and systemd will act on the silence.
func (w *Watchdog) Run(ctx context.Context) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("watchdog: reading WATCHDOG_USEC: %w", err)
	}
	if interval <= 0 {
		w.log.Debug("systemd watchdog not enabled for this process")
		return nil
	}
	period := interval / 2
	w.log.Debug("systemd watchdog enabled", "interval", interval, "ping_every", period)
	w.tick(time.Now())
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			w.tick(now)
		}
	}
}

// tick pings when healthy as of now and logs transitions otherwise.
func (w *Watchdog) tick(now time.Time) {
	ok, stale := w.health.Healthy(now)
	if !ok {
		if !slices.Equal(stale, w.lastStale) {
			w.log.Error("withholding watchdog ping: unhealthy: "+strings.Join(stale, "; "), "stale", stale)
			w.lastStale = stale
		}
		return
	}
	if w.lastStale != nil {
		w.log.Info("all components beating again, resuming watchdog pings")
		w.lastStale = nil
	}
	if err := w.ping(); err != nil {
		w.log.Error("watchdog ping failed", "error", err)
	}
}
