package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/sesame-knock/sesame/internal/preflight"
)

// checkConfig is --check: what the start would find wrong with the
// config and the command line (package preflight), under the sandbox of
// the installed sesamed.service when there is one. It returns the exit
// status: 0 when sesamed would start.
func (f *flags) checkConfig(ctx context.Context, stdout, stderr io.Writer) int {
	sb, err := preflight.InstalledUnit()
	if err != nil {
		fmt.Fprintln(stderr, "sesamed:", err)
		return 1
	}
	var ifaces []string
	for _, i := range f.ifaces {
		if i = strings.TrimSpace(i); i != "" {
			ifaces = append(ifaces, i)
		}
	}
	cfg, rep := preflight.Load(ctx, f.config, preflight.Options{Interfaces: ifaces, LogFile: f.logFile,
		PidFile: f.pidFile, StateDir: f.stateDir, Sandbox: sb})
	for _, n := range rep.Notes {
		fmt.Fprintln(stderr, "note:", n)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err := rep.Err(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK, %d door(s)\n", f.config, len(cfg.Doors))
	return 0
}
