package systemdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// System is a booted systemd in its own namespaces. Its methods are safe
// for concurrent use: its fields are fixed after Boot, except waitErr,
// which the reaping goroutine writes before closing exited, and stopErr,
// which stopOnce guards.
type System struct {
	tb     testing.TB
	opts   Options
	pid    int // host PID of the namespace's init: the shell, then systemd
	cmd    *exec.Cmd
	cg     *childCgroup
	output *syncbuf.Buffer // the setup script's and early systemd's stdout and stderr

	exited  chan struct{} // closed when the init process has been reaped
	waitErr error         // its exit status, valid after exited

	stopOnce sync.Once
	stopErr  error
}

// Boot starts a systemd in fresh namespaces with the given units and files
// and waits until it has finished booting (is-system-running says
// "running"). It skips the test without root and fails it, with the
// journal's tail, when the boot fails, a Start unit fails, or the boot
// overruns BootTimeout. t.Cleanup powers the system off (killing its init
// by PID only if that times out) and removes its cgroup, also when the
// test has failed; a failed test also gets the journal's tail in its log.
func Boot(tb testing.TB, opts Options) *System {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: booting systemd in namespaces needs root (CI runs as root)")
	}
	s, err := boot(tb, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func boot(tb testing.TB, opts Options) (*System, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	systemd, err := findSystemd()
	if err != nil {
		return nil, err
	}
	for _, tool := range []string{"sh", "mount", "umount", "pivot_root", "setpriv", "nsenter", "systemctl", "journalctl", "stat", "mknod"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("systemdtest: %s not found (util-linux, coreutils, systemd): %w", tool, err)
		}
	}

	stage := tb.TempDir()
	if strings.HasPrefix(stage, "/run/") || stage == "/run" {
		return nil, fmt.Errorf("systemdtest: staging dir %s is under /run, which the setup hides; set TMPDIR elsewhere", stage)
	}
	files, err := writeStage(stage, opts)
	if err != nil {
		return nil, err
	}

	cg, err := newChildCgroup()
	if err != nil {
		return nil, err
	}
	s := &System{
		tb:     tb,
		opts:   opts,
		cg:     cg,
		output: &syncbuf.Buffer{},
		exited: make(chan struct{}),
	}
	s.cmd = exec.Command("/bin/sh", "-c", setupScript(stage, systemd, opts.LogLevel, files))
	s.cmd.Env = []string{"PATH=" + nsPath, "LANG=C.UTF-8"}
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		// The shell becomes PID 1 of the new PID namespace, so cmd's PID
		// is the host's handle on it for nsenter.
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		// clone3 starts it inside the child cgroup; the cgroup namespace
		// is unshared after that, so its root is the child cgroup.
		UseCgroupFD:  true,
		CgroupFD:     cg.fd,
		Unshareflags: syscall.CLONE_NEWCGROUP,
		// If the test binary dies, the kernel kills the namespace's init,
		// and with it everything in the namespace.
		Pdeathsig: syscall.SIGKILL,
		Setsid:    true,
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking thread exits, not the process:
		// keep this goroutine on its own thread until the child is reaped,
		// so that no other goroutine can end that thread early.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		if rerr := cg.remove(10 * time.Second); rerr != nil {
			tb.Log(rerr)
		}
		return nil, fmt.Errorf("systemdtest: start namespace init: %w", err)
	}
	s.pid = s.cmd.Process.Pid
	tb.Cleanup(s.cleanup)

	if err := s.waitBooted(); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, s.diagnostics(""))
	}
	return s, nil
}

func findSystemd() (string, error) {
	for _, p := range []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", errors.New("systemdtest: systemd not installed (no /usr/lib/systemd/systemd)")
}

// writeStage writes units/ and files/ into the host staging directory.
func writeStage(stage string, opts Options) ([]placedFile, error) {
	units := filepath.Join(stage, "units")
	if err := os.MkdirAll(filepath.Join(stage, "files"), 0o755); err != nil {
		return nil, fmt.Errorf("systemdtest: stage: %w", err)
	}
	all := map[string]string{TargetName: targetUnit(opts.Start)}
	for name, text := range opts.Units {
		all[name] = text
	}
	for name, text := range all {
		p := filepath.Join(units, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("systemdtest: stage unit %s: %w", name, err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("systemdtest: stage unit %s: %w", name, err)
		}
	}
	paths := make([]string, 0, len(opts.Files))
	for p := range opts.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var files []placedFile
	for i, p := range paths {
		spec := opts.Files[p]
		f := placedFile{staged: strconv.Itoa(i), path: p, mode: spec.Mode}
		if f.mode == 0 {
			f.mode = 0o644
		}
		if spec.Source != "" {
			src, err := filepath.Abs(spec.Source)
			if err != nil {
				return nil, fmt.Errorf("systemdtest: file %s: %w", p, err)
			}
			fi, err := os.Stat(src)
			if err != nil {
				return nil, fmt.Errorf("systemdtest: file %s: source: %w", p, err)
			}
			if spec.Mode == 0 {
				f.mode = fi.Mode().Perm()
			}
			f.source = src
		} else if err := os.WriteFile(filepath.Join(stage, "files", f.staged), spec.Content, 0o600); err != nil {
			return nil, fmt.Errorf("systemdtest: stage file %s: %w", p, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// waitBooted polls is-system-running until "running".
func (s *System) waitBooted() error {
	deadline := time.Now().Add(s.opts.BootTimeout)
	var state string
	var lastErr error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("systemdtest: namespace init exited during boot: %v", s.waitErr)
		default:
		}
		out, err := s.runTimeout(10*time.Second, "systemctl", "is-system-running")
		state, lastErr = strings.TrimSpace(out), err
		switch state {
		case "running":
			return nil
		case "degraded":
			failed, _ := s.Systemctl("list-units", "--failed", "--plain", "--no-legend")
			return fmt.Errorf("systemdtest: boot degraded, failed units:\n%s", failed)
		case "maintenance", "stopping", "offline":
			// offline is reported before the manager answers; the others
			// mean the boot went wrong.
			if state != "offline" {
				return fmt.Errorf("systemdtest: system state %q during boot", state)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("systemdtest: not booted after %v (state %q, last error %v)", s.opts.BootTimeout, state, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID returns the host PID of the namespace's init (systemd).
func (s *System) PID() int { return s.pid }

// NetNSPath returns the path of the system's network namespace, e.g. for
// `ip link add ... netns` or netns.GetFromPath.
func (s *System) NetNSPath() string { return fmt.Sprintf("/proc/%d/ns/net", s.pid) }

// Exec returns a command that runs argv inside all of the system's
// namespaces, with its root and working directory, like a process systemd
// started (but outside any unit). Its environment is a minimal PATH, LANG
// and TERM; set cmd.Env to change it.
func (s *System) Exec(argv ...string) *exec.Cmd {
	return s.execContext(context.Background(), argv...)
}

func (s *System) execContext(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"--target", strconv.Itoa(s.pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = []string{"PATH=" + nsPath, "LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "HOME=/root"}
	cmd.WaitDelay = time.Second
	return cmd
}

// Run runs argv inside the system (see Exec) and returns its combined
// output; the error includes the command and its output. CommandTimeout
// bounds it.
func (s *System) Run(argv ...string) (string, error) {
	return s.runTimeout(s.opts.CommandTimeout, argv...)
}

func (s *System) runTimeout(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var buf bytes.Buffer
	cmd := s.execContext(ctx, argv...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, ctx.Err())
	}
	if err != nil {
		return buf.String(), fmt.Errorf("systemdtest: %s: %w: %s", strings.Join(argv, " "), err, buf.String())
	}
	return buf.String(), nil
}

// Systemctl runs systemctl inside the system. As with systemctl itself, a
// query such as is-active returns an error for any answer but the
// positive one; the output is returned either way.
func (s *System) Systemctl(args ...string) (string, error) {
	return s.Run(append([]string{"systemctl", "--no-pager"}, args...)...)
}

// Journalctl runs journalctl inside the system.
func (s *System) Journalctl(args ...string) (string, error) {
	return s.Run(append([]string{"journalctl", "--no-pager"}, args...)...)
}

// WaitActive waits until unit is active. It returns at once, with the
// unit's status and journal, if the unit fails, and the same on timeout.
func (s *System) WaitActive(unit string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, _ := s.runTimeout(10*time.Second, "systemctl", "is-active", unit)
		switch state := strings.TrimSpace(out); state {
		case "active":
			return nil
		case "failed":
			return fmt.Errorf("systemdtest: unit %s failed\n%s", unit, s.diagnostics(unit))
		default:
			if time.Now().After(deadline) {
				return fmt.Errorf("systemdtest: unit %s not active after %v (state %q)\n%s", unit, timeout, state, s.diagnostics(unit))
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("systemdtest: systemd exited while waiting for %s: %v", unit, s.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitLog waits until the journal of unit contains substr (in the message
// text), so tests need not sleep for journald to catch up.
func (s *System) WaitLog(unit, substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := s.runTimeout(10*time.Second, "journalctl", "--no-pager", "-o", "cat", "-u", unit)
		if err == nil && strings.Contains(out, substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("systemdtest: %q not in the journal of %s after %v\n%s", substr, unit, timeout, s.diagnostics(unit))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Show returns one property of unit (systemctl show -p NAME --value).
func (s *System) Show(unit, property string) (string, error) {
	out, err := s.Systemctl("show", "-p", property, "--value", "--", unit)
	return strings.TrimSpace(out), err
}

// WriteFile writes a file inside the system (symlinks resolve inside it),
// creating parent directories.
func (s *System) WriteFile(path string, data []byte, mode fs.FileMode) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommandTimeout)
	defer cancel()
	cmd := s.execContext(ctx, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"`, "sh", path, strconv.FormatUint(uint64(mode.Perm()), 8))
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("systemdtest: write %s: %w: %s", path, err, out)
	}
	return nil
}

// ReadFile reads a file inside the system.
func (s *System) ReadFile(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommandTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := s.execContext(ctx, "cat", "--", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("systemdtest: read %s: %w: %s", path, err, stderr.String())
	}
	return out, nil
}

// Poweroff shuts the system down with `systemctl poweroff` and waits for
// its init to exit. If that does not happen within PoweroffTimeout, it
// kills the init by PID (ending the PID namespace) and reports an error.
// Safe to call more than once; Cleanup calls it.
func (s *System) Poweroff() error {
	s.stopOnce.Do(func() { s.stopErr = s.poweroff() })
	return s.stopErr
}

func (s *System) poweroff() error {
	select {
	case <-s.exited:
		return exitError(s.waitErr)
	default:
	}
	// systemctl poweroff first asks logind over D-Bus, which is not
	// running here; it then falls back to the private socket, so its
	// "Failed to connect to bus" line is noise.
	_, perr := s.runTimeout(30*time.Second, "systemctl", "poweroff")
	wait := s.opts.PoweroffTimeout
	if perr != nil {
		// systemd did not take the request (it may never have come up):
		// give it a moment in case it is going down anyway.
		wait = min(wait, 5*time.Second)
	}
	select {
	case <-s.exited:
		return exitError(s.waitErr)
	case <-time.After(wait):
	}
	kerr := s.cmd.Process.Kill() // this PID only: our own child, the namespace's init
	<-s.exited
	return fmt.Errorf("systemdtest: systemd did not power off within %v (poweroff: %v), killed its init (%v)\n%s",
		wait, perr, kerr, s.output.String())
}

// exitError accepts a clean power-off: reboot(RB_POWER_OFF) in a PID
// namespace ends its init with SIGINT.
func exitError(err error) error {
	var ee *exec.ExitError
	if err == nil {
		return nil
	}
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			return nil
		}
	}
	return fmt.Errorf("systemdtest: systemd ended with %v", err)
}

// cleanup runs from t.Cleanup: journal for failed tests, power-off, cgroup.
func (s *System) cleanup() {
	if s.tb.Failed() {
		select {
		case <-s.exited:
			s.tb.Logf("systemdtest: systemd had already exited (%v); its output:\n%s", s.waitErr, s.output.String())
		default:
			if out, err := s.runTimeout(30*time.Second, "journalctl", "--no-pager", "-n", "200"); err == nil {
				s.tb.Logf("systemdtest: journal tail of the failed test:\n%s", out)
			}
		}
	}
	if err := s.Poweroff(); err != nil {
		s.tb.Error(err)
	}
	if err := s.cg.remove(10 * time.Second); err != nil {
		s.tb.Error(err)
	}
}

// diagnostics gathers what explains a failure: the unit's status and
// journal when unit is set, else the whole journal's tail, plus the
// setup's output.
func (s *System) diagnostics(unit string) string {
	var b strings.Builder
	select {
	case <-s.exited:
		fmt.Fprintf(&b, "--- systemd exited: %v\n", s.waitErr)
	default:
		if unit != "" {
			out, _ := s.runTimeout(10*time.Second, "systemctl", "--no-pager", "status", "--lines=0", unit)
			fmt.Fprintf(&b, "--- systemctl status %s\n%s", unit, out)
			out, _ = s.runTimeout(10*time.Second, "journalctl", "--no-pager", "-n", "50", "-u", unit)
			fmt.Fprintf(&b, "--- journal of %s\n%s", unit, out)
		} else {
			out, _ := s.runTimeout(10*time.Second, "systemctl", "--no-pager", "list-jobs")
			fmt.Fprintf(&b, "--- pending jobs\n%s", out)
			out, _ = s.runTimeout(10*time.Second, "journalctl", "--no-pager", "-n", "80")
			fmt.Fprintf(&b, "--- journal tail\n%s", out)
		}
	}
	if out := s.output.String(); out != "" {
		fmt.Fprintf(&b, "--- setup and systemd output\n%s", out)
	}
	return b.String()
}
