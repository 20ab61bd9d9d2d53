// Command sesamed is the Sesame port-knocking daemon: it reads a
// knockd.conf-compatible file, watches for knocks on the wire and opens
// doors, and keeps every grant journaled until it is revoked.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "sesamed:", err)
		}
		os.Exit(1)
	}
}
