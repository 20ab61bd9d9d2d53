// Package command runs knockd-compatible door commands: a template with
// %IP% expanded from a validated address, run by /bin/sh -c as knockd's
// system() does. It bounds what commands can do to the machine: a cap on
// commands running at once, a per-door rate limit on start commands, and
// a time limit after which a command's process group is killed. It does
// not decide when commands run; package grant does.
//
// Warm shell. Spawning /bin/sh (fork, execve, dash's dynamic loading)
// costs a few milliseconds, more than everything else between a knock
// and its command. So a Runner keeps one shell started ahead and
// waiting, and Run (not RunMarked, whose launch record must be locked
// from the fork on) hands the command to it through a pipe on the
// shell's fd 3 instead of forking; a replacement starts in the
// background once that command has ended (a command that finds none
// idle meanwhile forks its own). The first warm shell is started after
// the Runner's first unmarked command, so a daemon whose doors never run
// one (native grants, doors with a stop command) keeps no idle shell.
// The warm shell is started as a cold one would be (its own process
// group, stdin /dev/null, output captured, $0 the shell's path), and it
// evals the command with no positional
// parameters, none of its own variables and fd 3 closed, so $$, $#,
// exit, traps, set -e, the exit status and the timeout's kill of the
// process group are as under `sh -c`. What differs:
//   - the shell, its environment, working directory and umask are the
//     daemon's at the moment the warm shell started, not at the knock;
//     the command's extra environment is exported by the shell;
//   - messages dash writes about the command name the eval builtin:
//     "/bin/sh: 1: eval: iptablesx: not found" and "/bin/sh: 2: eval:
//     Syntax error: ..." where a cold shell writes "/bin/sh: 1:
//     iptablesx: not found" (the line numbers are the command's own);
//   - while idle, ps shows the waiting script (sh -c '__sesame_n=...').
//
// A command the warm shell could not run exactly as sh -c (a line equal
// to the shell's random token, a NUL, more than 4096 bytes with its
// environment, an environment name the shell sets itself such as IFS)
// takes the cold path, as does one that finds no idle warm shell (a
// burst) or a dead one. The idle shell exits without running anything
// when its pipe ends before the token: when the daemon dies, or at
// Close. Options.NoWarm turns it off.
package command

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/sesame-knock/sesame/core/event"
)

// Expand substitutes every %IP% in tmpl with ip's text. The address
// comes from a decoded packet, so its text holds only hex digits, dots
// and colons: nothing a shell would interpret.
func Expand(tmpl string, ip netip.Addr) string {
	return strings.ReplaceAll(tmpl, "%IP%", ip.Unmap().String())
}

// Options bound the runner. Zero values take the defaults.
type Options struct {
	MaxConcurrent int           // commands running at once (default 16)
	Rate          rate.Limit    // start commands per second per door (default 10)
	Burst         int           // per-door burst (default 20)
	Timeout       time.Duration // a command running longer is killed (default 2 min)
	Shell         string        // default /bin/sh
	Logger        hclog.Logger
	// NoWarm turns the warm shell off: every command forks its shell
	// when it is run (see the package doc).
	NoWarm bool
}

// Result is how a command ended.
type Result struct {
	Cmd      string
	ExitCode int // -1 when killed or not started
	Duration time.Duration
	Err      error // nil when the command ran to completion (any exit code)
	// Output is the start of what the command wrote to stdout and stderr
	// (at most outputLimit bytes), trimmed.
	Output string
}

// Bounds on a command's output: what Result keeps, and what one log line
// shows of a failed command's.
const (
	outputLimit    = 4096
	outputLogLimit = 1024
)

// Runner runs commands. It is safe for concurrent use.
type Runner struct {
	opts Options
	sem  chan struct{}
	log  hclog.Logger

	mu       sync.Mutex // guards limiters
	limiters map[string]*rate.Limiter

	warmMu sync.Mutex // guards the following fields
	// warm is the idle warm shell, nil when there is none: the start
	// goroutine puts it here, a Run of an unmarked command takes it
	// (and then owns it), Close ends it.
	warm     *warmShell
	starting bool // a warm start goroutine is in flight (there is at most one)
	closed   bool // Close was called: no more warm shells

	warmWG sync.WaitGroup // the warm start goroutines; Close waits for them
}

// New returns a Runner. It starts no shell: unless opts.NoWarm, the
// first unmarked command forks its own and leaves a warm shell behind
// (see the package doc); Close ends it.
func New(opts Options) *Runner {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 16
	}
	if opts.Rate <= 0 {
		opts.Rate = 10
	}
	if opts.Burst <= 0 {
		opts.Burst = 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return &Runner{opts: opts, sem: make(chan struct{}, opts.MaxConcurrent), log: opts.Logger, limiters: make(map[string]*rate.Limiter)}
}

// Close ends the idle warm shell (it exits without running anything)
// and waits for a warm start in flight. Commands running are left to
// finish; Run keeps working after Close, on the cold path. Close is safe
// to call twice.
func (r *Runner) Close() {
	r.warmMu.Lock()
	r.closed = true
	ws := r.warm
	r.warm = nil
	r.warmMu.Unlock()
	if ws != nil {
		ws.end()
	}
	r.warmWG.Wait()
}

// refill starts a warm shell in the background unless one is idle or
// starting, or the runner is closed or has NoWarm. It is called once per
// unmarked Run, so a shell that cannot start is tried again only at the
// next command, never in a loop.
func (r *Runner) refill() {
	r.warmMu.Lock()
	defer r.warmMu.Unlock()
	if r.opts.NoWarm || r.closed || r.warm != nil || r.starting {
		return
	}
	r.starting = true
	r.warmWG.Add(1)
	go func() {
		defer r.warmWG.Done()
		ws, err := startWarm(r.opts.Shell)
		r.warmMu.Lock()
		r.starting = false
		if err == nil && !r.closed {
			r.warm, ws = ws, nil
		}
		r.warmMu.Unlock()
		switch {
		case err != nil:
			r.log.Debug("commands run cold: "+err.Error(), "error", err)
		case ws != nil: // closed meanwhile
			ws.end()
		}
	}()
}

// handWarm gives cmd to the idle warm shell and returns the shell's
// command and output buffer, or nil when cmd must take the cold path:
// no shell idle, the warm path cannot run cmd as the cold one would (the
// shell then stays idle for the next command), or the shell has died.
func (r *Runner) handWarm(cmd string, extraEnv []string) (*exec.Cmd, *limitedBuffer) {
	r.warmMu.Lock()
	ws := r.warm
	if ws == nil {
		r.warmMu.Unlock()
		return nil, nil
	}
	p, ok := ws.payload(cmd, extraEnv)
	if !ok {
		r.warmMu.Unlock()
		return nil, nil
	}
	r.warm = nil
	r.warmMu.Unlock()
	if err := ws.hand(p); err != nil {
		r.log.Debug("warm shell gone, command runs cold: "+err.Error(), "error", err)
		return nil, nil
	}
	return ws.c, ws.out
}

// Allow reports whether door may start another command at now. Only
// start commands are limited: a stop command closes a door and is never
// refused.
func (r *Runner) Allow(door string, now time.Time) bool {
	r.mu.Lock()
	l, ok := r.limiters[door]
	if !ok {
		l = rate.NewLimiter(r.opts.Rate, r.opts.Burst)
		r.limiters[door] = l
	}
	r.mu.Unlock()
	return l.AllowN(now, 1)
}

// Run runs cmd for door and waits for it, logging in knockd's words. It
// waits for a free slot first (ctx ends the wait). extraEnv is added to
// the command's environment. The command runs in the idle warm shell
// when there is one and it can run it as sh -c would, else in a shell
// forked for it; the outcomes are the same either way (but for the
// shell's own messages: see the package doc).
func (r *Runner) Run(ctx context.Context, door, cmd string, extraEnv ...string) Result {
	return r.run(ctx, door, cmd, "", []string{r.opts.Shell, "-c", cmd}, extraEnv)
}

// RunMarked is Run for a command whose fate must be known after a crash
// (see Mark): before the command starts, RunMarked removes what an
// earlier run left at marker and creates marker+".pid" (the launch
// record), locked (flock) by an open file the command's wrapper shell
// inherits at the fork; the wrapper writes its pid there and, once cmd
// has finished, cmd's exit status to marker, and holds the lock until it
// exits. The wrapper is in the command's process group, not the daemon's,
// so the mark is written even if the daemon is killed while cmd runs,
// and the lock says "still running" from the fork on, before the wrapper
// has run a line. cmd itself does not inherit the lock. The launch record
// is made once a slot is free, right before the fork: a command that
// never got a slot leaves none. When it cannot be created, cmd is not run
// and Result.Err wraps ErrNoMarker.
func (r *Runner) RunMarked(ctx context.Context, door, cmd, marker string, extraEnv ...string) Result {
	const wrapper = `echo $$ > "$2.pid"; "$0" -c "$1" 3>&-; rc=$?; echo "$rc" > "$2"; rm -f "$2.pid"; exit "$rc"`
	return r.run(ctx, door, cmd, marker, []string{r.opts.Shell, "-c", wrapper, r.opts.Shell, cmd, marker}, extraEnv)
}

func (r *Runner) run(ctx context.Context, door, cmd, marker string, argv, extraEnv []string) Result {
	res := Result{Cmd: cmd, ExitCode: -1}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		res.Err = fmt.Errorf("door %q: waiting to run command: %w", door, ctx.Err())
		return res
	}
	defer func() { <-r.sem }()
	var lock *os.File
	if marker != "" {
		var err error
		if lock, err = launchRecord(marker); err != nil {
			r.log.Error(fmt.Sprintf("%s: command not run: %v", door, err), event.KeyDoor, door, "command", cmd)
			res.Err = fmt.Errorf("door %q: %w", door, err)
			return res
		}
	}

	r.log.Info(door+": running command: "+cmd, event.Event{Kind: event.Command, Door: door}.Args("command", cmd)...)
	start := time.Now()
	var c *exec.Cmd
	var out *limitedBuffer
	if marker == "" {
		c, out = r.handWarm(cmd, extraEnv)
	}
	if c == nil {
		c, out = shellCmd(argv, append(os.Environ(), extraEnv...))
		if lock != nil {
			c.ExtraFiles = []*os.File{lock} // fd 3 in the wrapper: it holds the lock
		}
		err := c.Start()
		if lock != nil {
			// The wrapper holds the lock now (or nothing was started).
			lock.Close()
			if err != nil {
				RemoveMark(marker)
			}
		}
		if err != nil {
			res.Err = fmt.Errorf("door %q: start command: %w", door, err)
			r.log.Error("error: command fork failed!", event.KeyDoor, door, "error", err)
			return res
		}
	}
	if marker == "" {
		// The next command's shell starts once this one has ended: a
		// spawn meanwhile would take CPU from this command (on two cores,
		// writing to its first instruction took 1.5-2.3 ms beside one
		// instead of 0.9 ms).
		defer r.refill()
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	timer := time.NewTimer(r.opts.Timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		err = <-done
		res.Err = fmt.Errorf("door %q: command killed after %v", door, r.opts.Timeout)
	}
	res.Duration = time.Since(start)
	if c.ProcessState != nil {
		res.ExitCode = c.ProcessState.ExitCode()
	}
	res.Output = strings.TrimSpace(out.String())
	failed := true
	switch {
	case res.Err != nil:
		r.log.Error(res.Err.Error(), event.KeyDoor, door, "command", cmd)
	case res.ExitCode != 0:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			res.Err = fmt.Errorf("door %q: command: %w", door, err)
		}
		r.log.Warn(fmt.Sprintf("%s: command returned non-zero status code (%d)", door, res.ExitCode), event.Event{Kind: event.CommandFailed, Door: door}.Args("status", res.ExitCode)...)
	default:
		failed = false
	}
	switch {
	case res.Output == "":
	case failed:
		// What the command said is what the admin needs to fix it ("sh:
		// 1: iptablesx: not found"): at the failure's level, after
		// knockd's line, quoted so that its newlines cannot forge lines.
		r.log.Warn(fmt.Sprintf("%s: command output (status %d): %s", door, res.ExitCode, quoteOutput(res.Output, outputLogLimit)),
			event.Event{Kind: event.CommandOutput, Door: door}.Args("status", res.ExitCode)...)
	default:
		r.log.Debug(door+": command output", event.KeyDoor, door, "output", res.Output)
	}
	return res
}

// shellCmd is how every command's shell is started, cold or warm: env
// as given, stdin /dev/null, stdout and stderr into one bounded buffer,
// and its own process group, so a timeout kills what it forked too, and
// a daemon killed outright does not take a running stop command with it.
func shellCmd(argv, env []string) (*exec.Cmd, *limitedBuffer) {
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = env
	c.Stdin = nil
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &limitedBuffer{max: outputLimit}
	c.Stdout, c.Stderr = out, out
	return c, out
}

// quoteOutput is out as one quoted line (Go syntax: newlines and control
// characters escaped), cut to max bytes of out with a note of how much
// more there was.
func quoteOutput(out string, max int) string {
	if len(out) <= max {
		return strconv.Quote(out)
	}
	cut := strings.ToValidUTF8(out[:max], "")
	return fmt.Sprintf("%s... (%d more bytes)", strconv.Quote(cut), len(out)-len(cut))
}

// FirstLine is the first line of a command's output, cut to max bytes:
// what a one-line summary (sesame grants) shows of it.
func FirstLine(out string, max int) string {
	line, _, _ := strings.Cut(out, "\n")
	line = strings.TrimSpace(line)
	if len(line) > max {
		line = strings.ToValidUTF8(line[:max], "") + "..."
	}
	return line
}

// limitedBuffer keeps the first max bytes of a command's output for the
// debug log, so a chatty command cannot grow the daemon's memory.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
