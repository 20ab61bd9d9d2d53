package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// idleWarm waits (generously: a loaded machine) until r has an idle
// warm shell and returns it.
func idleWarm(t testing.TB, r *Runner) *warmShell {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.warmMu.Lock()
		ws := r.warm
		r.warmMu.Unlock()
		if ws != nil {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatal("no warm shell after 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// used reports whether ws ran a command (Run waited for it).
func used(ws *warmShell) bool { return ws.c.ProcessState != nil }

// alive reports whether pid is a process that has not exited (a zombie
// whose parent does not reap it counts as exited).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:]) // state ppid pgrp ...
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// newWarm is New, with the first warm shell started at once (a Runner
// starts one after its first unmarked command otherwise).
func newWarm(t *testing.T, opts Options) *Runner {
	r := New(opts)
	t.Cleanup(r.Close)
	r.refill()
	return r
}

// The warm path runs a command as `sh -c` does: same exit code, same
// output, same view of parameters, environment, stdin and file
// descriptors. Each command runs once cold (NoWarm) and once through a
// warm shell that must have been used.
func TestWarmEquivalentToCold(t *testing.T) {
	dir := t.TempDir()
	cold := newWarm(t, Options{NoWarm: true})
	warm := newWarm(t, Options{})
	env := []string{"SESAME_Q=it's a \"quote\"\nand a newline $1 \\n", "SESAME_E="}
	tests := []string{
		`echo "$0" $# "$*"`,
		`printf '[%s]\n' "$SESAME_Q" "${SESAME_E-unset}"; env | grep -c '^SESAME_Q=it'`,
		"echo a\n\necho 'b\nc'\n  echo d   \\\n e",
		`exit 7`,
		`echo out; echo err >&2; exit 3`,
		`set -e; false; echo not reached`,
		`read x; echo "read $? [$x]"`,
		`printf '%s\n' 'a\b' "c\"d" \$1 '$1' "\\" '\'`,
		`break; echo after break`,
		`continue; echo after continue`,
		`for i in 1 2; do echo $i; done; trap 'echo bye' EXIT`,
		`printf %s "$IFS" | od -An -c`,
		`set | grep -c __sesame`,
		`ls /proc/$$/fd`,
		`echo $PPID`,
		`return 5; echo after return`,
		`kill -9 $$`,
		`echo a\`,
		`x=$(echo sub); echo "$x $-"`,
		`cd ` + dir + ` && pwd; umask`,
		"echo first\n" + `sh -c 'exit 9'`,
	}
	for _, cmd := range tests {
		want := cold.Run(context.Background(), "d", cmd, env...)
		ws := idleWarm(t, warm)
		got := warm.Run(context.Background(), "d", cmd, env...)
		if !used(ws) {
			t.Errorf("%q did not run in the warm shell", cmd)
		}
		if got.ExitCode != want.ExitCode || got.Output != want.Output || (got.Err == nil) != (want.Err == nil) {
			t.Errorf("%q:\nwarm %d %q %v\ncold %d %q %v", cmd, got.ExitCode, got.Output, got.Err, want.ExitCode, want.Output, want.Err)
		}
	}
}

// $$ is the pid of the process that runs the command: the warm shell
// itself, a child of the daemon, as the cold shell is.
func TestWarmPid(t *testing.T) {
	r := newWarm(t, Options{})
	ws := idleWarm(t, r)
	res := r.Run(context.Background(), "d", `echo $$ $PPID; cat /proc/$$/stat`)
	f := strings.Fields(res.Output)
	if len(f) < 7 || f[0] != strconv.Itoa(ws.c.Process.Pid) || f[1] != strconv.Itoa(os.Getpid()) || f[2] != f[0] {
		t.Fatalf("warm shell %d, daemon %d, command said %q", ws.c.Process.Pid, os.Getpid(), res.Output)
	}
	// Its own process group, as before: pgrp (field 5 of stat) is $$.
	if f[6] != f[0] {
		t.Errorf("process group %s, want %s", f[6], f[0])
	}
}

// The shell's own messages about the command (syntax errors, "not
// found", unset parameters) carry "eval: " after the line number on the
// warm path: dash names the builtin running. Line numbers are the
// command's own. This is the difference the package doc states.
func TestWarmShellMessages(t *testing.T) {
	cold := newWarm(t, Options{NoWarm: true})
	warm := newWarm(t, Options{})
	for _, tt := range []struct{ cmd, line string }{
		{"echo ok\nfoo(", "2"},
		{"\n\n/nonexistent/iptables -A INPUT", "3"},
		{"set -u\necho $undefined_var", "2"},
	} {
		want := cold.Run(context.Background(), "d", tt.cmd)
		ws := idleWarm(t, warm)
		got := warm.Run(context.Background(), "d", tt.cmd)
		if !used(ws) {
			t.Errorf("%q did not run in the warm shell", tt.cmd)
		}
		at := ": " + tt.line + ": "
		if !strings.Contains(want.Output, at) {
			t.Fatalf("cold %q said %q, no %q", tt.cmd, want.Output, at)
		}
		if exp := strings.Replace(want.Output, at, at+"eval: ", 1); got.ExitCode != want.ExitCode || got.Output != exp {
			t.Errorf("%q:\nwarm %d %q\nwant %d %q", tt.cmd, got.ExitCode, got.Output, want.ExitCode, exp)
		}
	}
}

// A command the warm path cannot run as sh -c would takes the cold path
// and leaves the warm shell idle for the next one: a line equal to the
// shell's token, an environment entry the shell treats itself.
func TestWarmFallsBackCold(t *testing.T) {
	r := newWarm(t, Options{})
	ws := idleWarm(t, r)
	for _, tt := range []struct {
		cmd  string
		env  []string
		want string
	}{
		{"echo a\n" + ws.token + "\necho b", nil, "a\n/bin/sh: 2: " + ws.token + ": not found\nb"},
		{`echo "[$IFS]"`, []string{"IFS=x"}, "[ \t\n]"},
		{`echo "$OPTIND"`, []string{"OPTIND=5"}, "1"},
		{"echo " + strings.Repeat("x", pipeBuf), nil, strings.Repeat("x", pipeBuf)},
	} {
		res := r.Run(context.Background(), "d", tt.cmd, tt.env...)
		if res.ExitCode != 0 || res.Output != tt.want {
			t.Errorf("%.40q: %d %q, want %q", tt.cmd, res.ExitCode, res.Output, tt.want)
		}
		if used(ws) || idleWarm(t, r) != ws {
			t.Fatalf("%.40q went to the warm shell", tt.cmd)
		}
	}
	// A warm shell that died is noticed at the hand-off (EPIPE): the
	// command runs cold.
	if err := ws.c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for alive(ws.c.Process.Pid) {
		time.Sleep(5 * time.Millisecond)
	}
	if res := r.Run(context.Background(), "d", "echo cold"); res.ExitCode != 0 || res.Output != "cold" || !used(ws) {
		t.Errorf("after the warm shell died: %+v", res)
	}
}

// After a warm run the runner starts another warm shell in the
// background; Close ends the idle one (no process left) and later runs
// are cold.
func TestWarmRefillAndClose(t *testing.T) {
	r := New(Options{})
	r.refill()
	ws := idleWarm(t, r)
	if res := r.Run(context.Background(), "d", "true"); res.ExitCode != 0 || !used(ws) {
		t.Fatalf("%+v", res)
	}
	next := idleWarm(t, r)
	if next == ws {
		t.Fatal("the used shell is idle again")
	}
	pid := next.c.Process.Pid
	r.Close()
	r.Close()
	if alive(pid) {
		t.Errorf("warm shell %d alive after Close", pid)
	}
	if next.c.ProcessState.ExitCode() != 0 {
		t.Errorf("closed warm shell: %v", next.c.ProcessState)
	}
	if res := r.Run(context.Background(), "d", "echo $$"); res.Output == strconv.Itoa(pid) || res.ExitCode != 0 {
		t.Errorf("after Close: %+v", res)
	}
	r.warmMu.Lock()
	defer r.warmMu.Unlock()
	if r.warm != nil || r.starting {
		t.Error("a warm shell after Close")
	}
}

// A warm shell whose pipe ends before the token (the daemon died while
// handing a command over, or was killed while the shell was idle) exits
// 0 and runs nothing of what it read.
func TestWarmEOFRunsNothing(t *testing.T) {
	for _, partial := range []bool{false, true} {
		dir := t.TempDir()
		ws, err := startWarm("/bin/sh")
		if err != nil {
			t.Fatal(err)
		}
		if partial {
			p, ok := ws.payload("touch "+dir+"/ran", []string{"A=1"})
			if !ok {
				t.Fatal("payload refused")
			}
			p = strings.TrimSuffix(p, ws.token+"\n")
			if _, err := ws.w.WriteString(p + ws.token[:5]); err != nil {
				t.Fatal(err)
			}
		}
		ws.w.Close()
		if err := ws.c.Wait(); err != nil || ws.c.ProcessState.ExitCode() != 0 {
			t.Errorf("partial %v: %v", partial, err)
		}
		if _, err := os.Stat(dir + "/ran"); err == nil {
			t.Errorf("partial %v: the command ran", partial)
		}
		if out := ws.out.String(); out != "" {
			t.Errorf("partial %v: the shell said %q", partial, out)
		}
	}
}

// A daemon killed outright leaves its idle warm shell nothing to do: it
// reads end of file and exits. The daemon is a child process running
// this test binary.
func TestWarmShellEndsWithKilledDaemon(t *testing.T) {
	if os.Getenv("SESAME_WARM_CHILD") != "" {
		r := New(Options{})
		r.refill()
		fmt.Println(idleWarm(t, r).c.Process.Pid)
		time.Sleep(time.Hour) // until killed
	}
	c := exec.Command(os.Args[0], "-test.run=^TestWarmShellEndsWithKilledDaemon$")
	c.Env = append(os.Environ(), "SESAME_WARM_CHILD=1")
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		c.Process.Kill()
		c.Wait()
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatalf("warm shell %d not running", pid)
	}
	c.Process.Kill()
	c.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			t.Fatalf("warm shell %d still running 30 s after its daemon was killed", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The timeout kills a warm command's whole process group, as a cold
// one's.
func TestWarmTimeoutKillsGroup(t *testing.T) {
	r := newWarm(t, Options{Timeout: 300 * time.Millisecond})
	ws := idleWarm(t, r)
	pgid := ws.c.Process.Pid
	res := r.Run(context.Background(), "d", "sleep 30 & sleep 31 & wait")
	if !used(ws) || res.Err == nil || !strings.Contains(res.Err.Error(), "killed") || res.ExitCode != -1 {
		t.Fatalf("result %+v", res)
	}
	var ee *exec.ExitError
	if errors.As(res.Err, &ee) {
		t.Errorf("err %v", res.Err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(groupMembers(pgid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d: %v alive", pgid, groupMembers(pgid))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The payload keeps the command's bytes and the environment's: a value
// with quotes and newlines is one line of exports.
func TestWarmPayload(t *testing.T) {
	ws := &warmShell{token: "0123456789abcdef0123456789abcdef"}
	p, ok := ws.payload("a\nb", []string{"X=it's\nhere", "Y="})
	want := `export X='it'\''s'"$__sesame_n"'here'; export Y=''; ` + "\na\nb\n" + ws.token + "\n"
	if !ok || p != want {
		t.Errorf("payload %q %v, want %q", p, ok, want)
	}
	for _, env := range []string{"1X=a", "X-Y=a", "NOEQUALS", "=a", "__sesame_c=a", "PPID=1", "X=a\x00b"} {
		if _, ok := ws.payload("true", []string{env}); ok {
			t.Errorf("%q accepted", env)
		}
	}
	if _, ok := ws.payload("a\x00b", nil); ok {
		t.Error("NUL accepted")
	}
	if _, ok := ws.payload("x"+ws.token, nil); ok {
		t.Error("token accepted")
	}
}

// A shell that cannot start costs one attempt per Run, never a loop:
// each Run reports the cold path's error, and no start stays in flight.
func TestWarmStartFails(t *testing.T) {
	r := newWarm(t, Options{Shell: "/nonexistent/sh"})
	for i := 0; i < 3; i++ {
		res := r.Run(context.Background(), "d", "true")
		if res.Err == nil || !strings.Contains(res.Err.Error(), "start command") {
			t.Fatalf("result %+v", res)
		}
	}
	r.warmWG.Wait()
	r.warmMu.Lock()
	defer r.warmMu.Unlock()
	if r.warm != nil || r.starting {
		t.Error("a warm shell from a shell that does not exist")
	}
}

// Any value of the extra environment reaches the command as it does a
// cold one: the exports' quoting keeps every byte.
func FuzzWarmEnv(f *testing.F) {
	for _, v := range []string{"", "a b", "it's", "\n", "'\n'", `"$1"\`, "$(touch x)", "`x`", "\t\r\x01\xff"} {
		f.Add(v)
	}
	cold := New(Options{NoWarm: true})
	warm := New(Options{})
	f.Cleanup(warm.Close)
	warm.refill()
	f.Fuzz(func(t *testing.T, v string) {
		cmd := `printf '[%s]' "$SESAME_F"`
		env := []string{"SESAME_F=" + v}
		want := cold.Run(context.Background(), "d", cmd, env...)
		ws := idleWarm(t, warm)
		got := warm.Run(context.Background(), "d", cmd, env...)
		if got.ExitCode != want.ExitCode || got.Output != want.Output || (got.Err == nil) != (want.Err == nil) {
			t.Errorf("%q:\nwarm %d %q %v\ncold %d %q %v", v, got.ExitCode, got.Output, got.Err, want.ExitCode, want.Output, want.Err)
		}
		if _, ok := ws.payload(cmd, env); ok && !used(ws) {
			t.Errorf("%q did not run warm", v)
		}
	})
}
