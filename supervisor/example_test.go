package supervisor_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sesame-knock/sesame/supervisor"
)

// Example wires the building blocks the way sesamed's run function can:
// supervised components that beat, a watchdog gated on their heartbeats,
// readiness, and reloads on SIGHUP bracketed by RELOADING=1 and READY=1.
func Example() {
	log := hclog.New(&hclog.LoggerOptions{Name: "sesamed"})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	n := supervisor.NewNotifier(log)
	sup := supervisor.New("sesamed", supervisor.Options{Logger: log})
	sup.Add("capture", 2*time.Second, supervisor.ServiceFunc(func(ctx context.Context, beat *supervisor.Beater) error {
		for ctx.Err() == nil {
			// Read packets with a timeout shorter than a second, so the
			// loop beats even when no packet arrives.
			beat.Beat()
			time.Sleep(100 * time.Millisecond)
		}
		return ctx.Err()
	}))
	go supervisor.NewWatchdog(n, sup.Heartbeats(), log).Run(ctx)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			n.Reloading()
			// Re-read the config; an error keeps the running one.
			n.Ready()
		}
	}()

	n.Ready()
	err := sup.Serve(ctx)
	n.Stopping()
	if err != nil {
		// ErrEscalated: run returns it, main exits non-zero, and systemd
		// (Restart=on-failure) starts a fresh process.
		log.Error("exiting", "error", err)
	}
}
