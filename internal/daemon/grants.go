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
// ShutdownGrace, for running commands; open grants stay journaled. Then
// it closes the command runner, which ends its idle warm shell.
func (d *daemon) grantsService() hook {
	return hook{name: "grants", start: func(context.Context) error {
		// Markers of start and stop commands (the directory's name
		// predates start markers).
		markers := filepath.Join(d.opts.StateDir, "stops")
		if err := os.MkdirAll(markers, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		d.runner = command.New(command.Options{Logger: d.log.Named("exec"), Timeout: commandLimit})
		cmds := &timedCommands{Commands: d.runner, m: d.metrics, lat: d.lat, noMarker: map[string]bool{}}
		opts := grant.Options{Journal: d.journal, Commands: cmds, MarkerDir: markers,
			CommandLimit: commandLimit, Logger: d.log.Named("grant"), Sharer: d.fleet}
		if b := d.fw.backend(); b != nil {
			opts.Firewall = d.measuredFirewall(b)
		}
		d.grants = grant.New(opts)
		d.grants.Resume(d.journal.Pending(), d.config().Doors)
		return nil
	}, stop: func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
		defer cancel()
		err := d.grants.Close(ctx)
		// No command starts after the grant manager's Close: the idle
		// warm shell exits without running anything.
		d.runner.Close()
		if n := pendingStops(d.grants.List()); n > 0 {
			what := fmt.Sprintf("%d grants with a stop command stay", n)
			if n == 1 {
				what = "1 grant with a stop command stays"
			}
			d.log.Warn("stopped: "+what+" open while sesamed is stopped; the next start runs each stop command at its deadline, or at once when that has passed",
				"grants", n)
		}
		return err
	}}
}

// pendingStops counts the grants whose stop command has not run (or has
// not succeeded yet).
func pendingStops(gs []grant.Grant) int {
	n := 0
	for _, g := range gs {
		if g.StopCmd != "" && g.State != grant.Unrecorded.String() {
			n++
		}
	}
	return n
}
