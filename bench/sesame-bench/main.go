// Command sesame-bench measures Sesame against Debian's knockd: a raw
// packet generator (gen), real knockers that time knock-to-connect
// (knockers), a listener for the protected port (listen), and the driver
// (all) that builds network namespaces, runs both daemons one after the
// other on the same config and traffic, and writes BENCHMARKS.md. It owns
// no daemon code; it only drives the binaries and reads /proc.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sesame-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
