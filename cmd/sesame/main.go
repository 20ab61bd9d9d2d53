// Command sesame is Sesame's client and admin tool: it knocks like
// knockd's knock client, checks config files, and lists and revokes a
// running daemon's grants.
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
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if e, ok := err.(exitError); ok {
			if e.msg != "" {
				fmt.Fprintln(stderr, e.msg)
			}
			return e.code
		}
		fmt.Fprintln(stderr, "sesame:", err)
		return 1
	}
	return 0
}

// exitError carries an exit status through cobra.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
