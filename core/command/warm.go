package command

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// warmScript is what a warm shell runs while it waits: it reads from fd
// 3 one line of exports (the command's extra environment), then the
// command's lines up to a line equal to $1 (the shell's token). At end
// of file before that line (the daemon died, or the runner was closed)
// it exits 0 and runs nothing. Otherwise it closes fd 3 and evals the
// command as `sh -c` would run it: no positional parameters, none of
// the script's variables, IFS untouched (read only sets it for itself),
// and the command's first line on the eval's line 1, so the shell's
// error messages name the command's own line numbers. The eval is
// outside the loop: a `break` or `continue` in the command must not
// reach the script's loop.
const warmScript = `__sesame_n='
'
IFS= read -r __sesame_e <&3 || exit 0
__sesame_c= __sesame_ok=
while IFS= read -r __sesame_l <&3; do
	if [ "$__sesame_l" = "$1" ]; then __sesame_ok=1; break; fi
	__sesame_c=$__sesame_c$__sesame_n$__sesame_l
done
[ -n "$__sesame_ok" ] || exit 0
exec 3<&-
eval "set --; $__sesame_e unset __sesame_c __sesame_e __sesame_l __sesame_n __sesame_ok; ${__sesame_c#$__sesame_n}"
`

// pipeBuf is the size up to which a write to a pipe is atomic (POSIX
// PIPE_BUF on Linux). A payload that fits is written at once into the
// empty pipe: the write never blocks and the shell never sees half of
// it. A longer one takes the cold path.
const pipeBuf = 4096

// warmShell is a shell started before its command is known. It serves
// exactly one command: its output buffer and its process are that
// command's.
type warmShell struct {
	c     *exec.Cmd
	out   *limitedBuffer
	w     *os.File // write end of the shell's fd 3; the shell exits 0 at its EOF
	token string   // the line that ends the command (the script's $1)
}

// startWarm starts a warm shell exactly as a cold command's shell is
// started (environment of this moment, stdin /dev/null, its own process
// group, output to a fresh buffer), with fd 3 the read end of a pipe.
func startWarm(shell string) (*warmShell, error) {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("warm shell: token: %w", err)
	}
	rd, w, err := os.Pipe() // both close-on-exec: no command inherits them
	if err != nil {
		return nil, fmt.Errorf("warm shell: %w", err)
	}
	ws := &warmShell{w: w, token: hex.EncodeToString(tok[:])}
	// $0 is the shell's path, as under `sh -c CMD`.
	c, out := shellCmd([]string{shell, "-c", warmScript, shell, ws.token}, os.Environ())
	ws.out = out
	c.ExtraFiles = []*os.File{rd}
	err = c.Start()
	rd.Close() // the shell holds the read end now: a write to a dead shell fails
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("warm shell: %w", err)
	}
	ws.c = c
	return ws, nil
}

// payload is what ws reads for cmd with extraEnv: a line of exports,
// the command's lines, and the token's line. ok is false when the warm
// path cannot run cmd as the cold one would: the text holds the token
// as a line or a NUL (which exec refuses), an entry of extraEnv is not
// NAME=value with a name the shell may export as is, or the payload is
// longer than one atomic pipe write.
func (ws *warmShell) payload(cmd string, extraEnv []string) (p string, ok bool) {
	if strings.Contains(cmd, ws.token) || strings.ContainsRune(cmd, 0) {
		return "", false
	}
	var b strings.Builder
	for _, kv := range extraEnv {
		name, val, found := strings.Cut(kv, "=")
		if !found || !exportable(name) || strings.ContainsRune(val, 0) {
			return "", false
		}
		// Single quotes keep every byte but the quote itself and the
		// newline, which would move the command's line numbers: those
		// come from the script's variable holding a newline.
		val = strings.ReplaceAll(val, `'`, `'\''`)
		val = strings.ReplaceAll(val, "\n", `'"$__sesame_n"'`)
		fmt.Fprintf(&b, "export %s='%s'; ", name, val)
	}
	b.WriteString("\n")
	b.WriteString(cmd)
	b.WriteString("\n" + ws.token + "\n")
	if b.Len() > pipeBuf {
		return "", false
	}
	return b.String(), true
}

// exportable reports whether name can be exported by the warm shell with
// the effect an environment entry has on a cold one: a shell name, not
// one the shell sets or reads itself at start (a cold shell ignores or
// overrides those in its environment), nor one of the script's own.
func exportable(name string) bool {
	if name == "" || strings.HasPrefix(name, "__sesame_") {
		return false
	}
	for i, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	switch name {
	case "IFS", "PPID", "OPTIND", "PWD", "LINENO", "ENV", "PS1", "PS2", "PS4":
		return false
	}
	return true
}

// hand writes p to ws and closes ws's end of the pipe. An error means the
// shell did not get the command (it has died: EPIPE); ws is then
// reaped.
func (ws *warmShell) hand(p string) error {
	_, err := ws.w.WriteString(p)
	ws.w.Close()
	if err != nil {
		_ = syscall.Kill(-ws.c.Process.Pid, syscall.SIGKILL)
		_ = ws.c.Wait()
	}
	return err
}

// end makes an idle ws exit without running anything (EOF before the
// token) and waits for it.
func (ws *warmShell) end() {
	ws.w.Close()
	_ = ws.c.Wait()
}
