package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// How the iptables backend runs iptables: argv straight to exec (never a
// shell), in the network namespace of the calling thread.

// xtRunFunc runs argv (argv[0] is the program's path) with stdin (nil for
// none) and returns its standard output; a program that fails gives an
// *xtError. Tests wrap it to record every invocation.
type xtRunFunc func(ctx context.Context, argv []string, stdin []byte) ([]byte, error)

// xtError is a failed iptables or iptables-restore run.
type xtError struct {
	Argv   []string
	Status int    // exit status; -1 when the program did not exit normally
	Stderr string // what it said, trimmed
	err    error
}

func (e *xtError) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("%s: exit status %d: %s", strings.Join(e.Argv, " "), e.Status, msg)
}

func (e *xtError) Unwrap() error { return e.err }

func runXtables(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		status := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &xtError{Argv: argv, Status: status, Stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return stdout.Bytes(), nil
}

// xtGone reports whether err says that what a command deletes is not
// there: a rule (`-D`), or the chain it names.
func xtGone(err error) bool {
	var e *xtError
	if !errors.As(err, &e) || e.Status != 1 {
		return false
	}
	for _, s := range []string{"does a matching rule exist", "No chain/target/match by that name", "does not exist"} {
		if strings.Contains(e.Stderr, s) {
			return true
		}
	}
	return false
}

// xtExists reports whether err says that what a command creates exists.
func xtExists(err error) bool {
	var e *xtError
	return errors.As(err, &e) && e.Status == 1 && strings.Contains(e.Stderr, "exists")
}

// xtNoTimeMatch reports whether err says the time match is unavailable.
func xtNoTimeMatch(err error) bool {
	var e *xtError
	return errors.As(err, &e) && strings.Contains(e.Stderr, "match `time'")
}
