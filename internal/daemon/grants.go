package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
)

// commandLimit is how long a door command may run before its process
// group is killed, also when it outlived a killed daemon.
const commandLimit = 2 * time.Minute

// journalService opens the grants journal; grants stay in it when the
// daemon stops.
func (d *daemon) journalService() hook {
	return hook{name: "journal", start: func(context.Context) error {
		j, err := journal.Open(d.opts.StateDir, d.log.Named("journal"))
		if err != nil {
			return err
		}
		d.journal = j
		return nil
	}, stop: func(context.Context) error { return d.journal.Close() }}
}

// grantsService runs the grant manager, which resumes the grants a
// previous run left open before any knock is seen. Its stop waits, up to
// ShutdownGrace, for running commands; open grants stay journaled.
func (d *daemon) grantsService() hook {
	return hook{name: "grants", start: func(context.Context) error {
		// Markers of start and stop commands (the directory's name
		// predates start markers).
		markers := filepath.Join(d.opts.StateDir, "stops")
		if err := os.MkdirAll(markers, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		runner := command.New(command.Options{Logger: d.log.Named("exec"), Timeout: commandLimit})
		opts := grant.Options{Journal: d.journal, Commands: runner, MarkerDir: markers,
			CommandLimit: commandLimit, Logger: d.log.Named("grant"), Sharer: d.fleet}
		if b := d.fw.backend(); b != nil {
			opts.Firewall = b
		}
		d.grants = grant.New(opts)
		d.grants.Resume(d.journal.Pending(), d.config().Doors)
		return nil
	}, stop: func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
		defer cancel()
		return d.grants.Close(ctx)
	}}
}
