// Package sshtest gives tests real OpenSSH material: keys made by
// Debian's ssh-keygen at test time, a real ssh-agent started on a private
// socket (and killed by its pid when the test ends), and `ssh-keygen -Y`
// to sign and verify. It also has a software FIDO signer, since no token
// is plugged into a test machine: it signs exactly as a token does
// (PROTOCOL.u2f), so OpenSSH verifies what it makes.
package sshtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// RequireOpenSSH fails the test when ssh-keygen, ssh-agent or ssh-add is
// missing: they come with Debian's openssh-client (make deps installs it).
func RequireOpenSSH(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not installed (apt-get install openssh-client, or make deps): %v", tool, err)
		}
	}
}

// Key is a key pair ssh-keygen wrote.
type Key struct {
	Path    string        // private key file; Path+".pub" is the public one
	Public  ssh.PublicKey // parsed from Path+".pub"
	Line    string        // the .pub file's line: "TYPE BASE64 COMMENT"
	Comment string
}

// KeyGen runs `ssh-keygen -t typ [-b bits] -N passphrase -C comment` into
// dir and returns the key. bits 0 leaves ssh-keygen's default.
func KeyGen(tb testing.TB, dir, name, typ string, bits int, passphrase, comment string) Key {
	tb.Helper()
	k, err := MakeKey(dir, name, typ, bits, passphrase, comment)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MakeKey is KeyGen for callers without a testing.TB (keys shared by a
// package's tests).
func MakeKey(dir, name, typ string, bits int, passphrase, comment string) (Key, error) {
	path := filepath.Join(dir, name)
	args := []string{"-q", "-t", typ, "-N", passphrase, "-C", comment, "-f", path}
	if bits != 0 {
		args = append(args, "-b", fmt.Sprint(bits))
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		return Key{}, fmt.Errorf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	line, err := os.ReadFile(path + ".pub")
	if err != nil {
		return Key{}, err
	}
	pub, c, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return Key{}, fmt.Errorf("parse %s.pub: %v", path, err)
	}
	return Key{Path: path, Public: pub, Line: strings.TrimSpace(string(line)), Comment: c}, nil
}

// Signer loads a passphrase-less private key file as an ssh.Signer.
func (k Key) Signer(tb testing.TB) ssh.Signer {
	tb.Helper()
	b, err := os.ReadFile(k.Path)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		tb.Fatalf("parse %s: %v", k.Path, err)
	}
	return s
}

// Agent is a running ssh-agent this package started.
type Agent struct {
	Socket string
	cmd    *exec.Cmd
}

// StartAgent starts `ssh-agent -a SOCK -D` on a fresh socket and kills
// it (by its pid) when the test ends.
func StartAgent(tb testing.TB) *Agent {
	tb.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sshtest")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-a", sock, "-D")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start ssh-agent: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		// The socket file appears at bind, before listen: wait for a connect.
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ssh-agent did not create %s: %s", sock, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &Agent{Socket: sock, cmd: cmd}
}

// Add loads a passphrase-less key into the agent with ssh-add.
func (a *Agent) Add(tb testing.TB, k Key) {
	tb.Helper()
	cmd := exec.Command("ssh-add", k.Path)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+a.Socket)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("ssh-add %s: %v\n%s", k.Path, err, out)
	}
}

// Keyring returns a client of the agent; the connection closes with the test.
func (a *Agent) Keyring(tb testing.TB) agent.ExtendedAgent {
	tb.Helper()
	conn, err := net.Dial("unix", a.Socket)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return agent.NewClient(conn)
}

// AllowedSigners returns an allowed_signers line for ssh-keygen -Y verify.
func AllowedSigners(identity string, pub ssh.PublicKey, options string) string {
	line := identity + " "
	if options != "" {
		line += options + " "
	}
	return line + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + "\n"
}

// VerifyWithSSHKeygen runs `ssh-keygen -Y verify -f ALLOWED -I ID -n NS -s SIG`
// with message on stdin. It returns ssh-keygen's output and its error (nil
// when ssh-keygen accepted the signature).
func VerifyWithSSHKeygen(tb testing.TB, pub ssh.PublicKey, signerOptions, namespace string, armored, message []byte) (string, error) {
	tb.Helper()
	dir := tb.TempDir()
	allowed := filepath.Join(dir, "allowed_signers")
	sig := filepath.Join(dir, "msg.sig")
	if err := os.WriteFile(allowed, []byte(AllowedSigners("knocker@test", pub, signerOptions)), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(sig, armored, 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "knocker@test", "-n", namespace, "-s", sig)
	cmd.Stdin = bytes.NewReader(message)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// SignWithSSHKeygen runs `ssh-keygen -Y sign -f KEY -n NS [-O hashalg=H]`
// over message and returns the armored signature.
func SignWithSSHKeygen(tb testing.TB, k Key, namespace, hashAlg string, message []byte) []byte {
	tb.Helper()
	dir := tb.TempDir()
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, message, 0o600); err != nil {
		tb.Fatal(err)
	}
	args := []string{"-Y", "sign", "-f", k.Path, "-n", namespace}
	if hashAlg != "" {
		args = append(args, "-O", "hashalg="+hashAlg)
	}
	args = append(args, msg)
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	sig, err := os.ReadFile(msg + ".sig")
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}
