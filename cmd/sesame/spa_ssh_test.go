package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/sshknock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// memReplay is a replay cache for the verifier that checks what arrives.
type memReplay struct {
	mu sync.Mutex
	m  map[[32]byte]bool
}

func (r *memReplay) Seen(d [32]byte, _ time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[d]
}
func (r *memReplay) Add(d [32]byte, _ time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[d] {
		return false
	}
	r.m[d] = true
	return true
}

// spaServer is a UDP socket on loopback and a Verifier for what arrives.
type spaServer struct {
	conn net.PacketConn
	port string
	v    *sshknock.Verifier
}

func newSPAServer(t *testing.T, addr, authorizedKeys string) *spaServer {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ks, err := sshknock.ParseKeys("authorized_keys", []byte(authorizedKeys))
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddr(addr)
	v, err := sshknock.NewVerifier(ks, sshknock.Options{
		IsLocal: func(a netip.Addr) bool { return a == local },
		Replay:  &memReplay{m: map[[32]byte]bool{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return &spaServer{conn: c, port: port, v: v}
}

// receive reads one datagram and verifies it.
func (s *spaServer) receive(t *testing.T) ([]byte, sshknock.Verdict) {
	t.Helper()
	buf := make([]byte, 2048)
	s.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, from, err := s.conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort(from.String()).Addr()
	return buf[:n], s.v.Verify(buf[:n], src, time.Now())
}

func runSesameCode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestSPASSHKeyFile: `sesame spa --ssh -i KEYFILE` sends a knock the server
// accepts, for the packet's source, with the asked timeout; -v prints
// its fields; -B saves exactly what was sent; -T sends nothing.
func TestSPASSHKeyFile(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	k := sshtest.KeyGen(t, dir, "id_ed25519", "ed25519", 0, "", "alice@laptop")
	srv := newSPAServer(t, "127.0.0.1", `open="tcp/22,tcp/443",timeout="60" `+k.Line+"\n")
	dry := dir + "/dry.b64"
	if code, _, errOut := runSesameCode(t, "spa", "--ssh", "-A", "tcp/22", "-D", "127.0.0.1", "-p", srv.port, "-i", k.Path, "-T", "-B", dry); code != 0 {
		t.Fatalf("-T: exit %d: %s", code, errOut)
	}
	saved := dir + "/pkt.b64"
	code, out, errOut := runSesameCode(t, "spa", "--ssh", "-A", "tcp/22,tcp/443", "-D", "127.0.0.1", "-p", srv.port, "-i", k.Path, "-f", "20", "-v", "-B", saved)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pkt, vd := srv.receive(t)
	if vd.Reason != sshknock.Accepted {
		t.Fatalf("%s %s", vd.Reason, vd.Detail)
	}
	r := vd.Request
	if r.Allow != netip.MustParseAddr("127.0.0.1") || r.Timeout != 20*time.Second || sshknock.FormatAccess(r.Ports) != "tcp/22,tcp/443" || r.Comment != "alice@laptop" {
		t.Errorf("request %+v", r)
	}
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || !bytes.Equal(got, pkt) {
		t.Errorf("-B file is not the packet sent (%v)", err)
	}
	if dryPkt, err := os.ReadFile(dry); err != nil || bytes.Equal(dryPkt, b) {
		t.Errorf("-T wrote nothing, or the same packet (%v)", err)
	}
	for _, want := range []string{r.Fingerprint.String(), "destination:  127.0.0.1:" + srv.port, "ports:        tcp/22,tcp/443", "allow:        the packet's source", "timeout:      20s"} {
		if !strings.Contains(out, want) {
			t.Errorf("-v output lacks %q:\n%s", want, out)
		}
	}
}

// TestSPASSHAgent: through a real ssh-agent holding several keys, --key
// picks one by comment (or fingerprint); over IPv6 with -a; without --key
// the command refuses and lists the keys.
func TestSPASSHAgent(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	ed := sshtest.KeyGen(t, dir, "ed", "ed25519", 0, "", "alice@laptop")
	ec := sshtest.KeyGen(t, dir, "ec", "ecdsa", 256, "", "alice@phone")
	rsa := sshtest.KeyGen(t, dir, "rsa", "rsa", 3072, "", "alice@old")
	ag := sshtest.StartAgent(t)
	for _, k := range []sshtest.Key{ed, ec, rsa} {
		ag.Add(t, k)
	}
	t.Setenv("SSH_AUTH_SOCK", ag.Socket)
	keys := `open="tcp/22" ` + ed.Line + "\n" + `open="tcp/22",from="2001:db8::/32,::1" ` + ec.Line + "\n" + `open="tcp/22" ` + rsa.Line + "\n"
	srv := newSPAServer(t, "::1", keys)

	code, _, errOut := runSesameCode(t, "spa", "--ssh", "-A", "tcp/22", "-D", "::1", "-p", srv.port)
	if code != 1 || !strings.Contains(errOut, "--key") || !strings.Contains(errOut, "alice@phone") {
		t.Errorf("three agent keys and no --key: exit %d: %s", code, errOut)
	}
	code, _, errOut = runSesameCode(t, "spa", "--ssh", "-6", "-A", "tcp/22", "-D", "::1", "-p", srv.port, "--key", "alice@phone", "-a", "2001:db8::5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, vd := srv.receive(t)
	if vd.Reason != sshknock.Accepted || vd.Request.Allow != netip.MustParseAddr("2001:db8::5") || vd.Request.Comment != ec.Comment || vd.Request.Server != netip.MustParseAddr("::1") {
		t.Fatalf("%s %s %+v", vd.Reason, vd.Detail, vd.Request)
	}
	fp := sshknock.FingerprintOf(rsa.Public).String()
	if code, _, errOut = runSesameCode(t, "spa", "--ssh", "-A", "tcp/22", "-D", "::1", "-p", srv.port, "--key", fp); code != 0 {
		t.Fatalf("--key FINGERPRINT: exit %d: %s", code, errOut)
	}
	if _, vd := srv.receive(t); vd.Reason != sshknock.Accepted || vd.Request.KeyType != "ssh-rsa" {
		t.Fatalf("RSA through the agent: %s %s", vd.Reason, vd.Detail)
	}
}

// TestSPASSHErrors: bad command lines exit 1 with a message.
func TestSPASSHErrors(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-D", "127.0.0.1"}, "-A"},
		{[]string{"-A", "tcp/22"}, "-D"},
		{[]string{"-A", "22", "-D", "127.0.0.1"}, "PROTO/PORT"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "-4", "-6"}, "exclude"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "-a", "10.0.0.1", "-s"}, "exclude"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "-a", "nonsense"}, "-a"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1"}, "SSH_AUTH_SOCK"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "-i", "/nonexistent/key"}, "no such file"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "-i", "/nonexistent/key", "--key", "x"}, "exclude"},
		{[]string{"-A", "tcp/22", "-D", "127.0.0.1", "--key-base64-hmac", "aGVsbG8="}, "--key-base64-hmac is fwknop's"},
		{[]string{"-A", "tcp/22", "-T", "-i", "/nonexistent/key"}, "-D HOST or --server-addr"},
	} {
		code, _, errOut := runSesameCode(t, append([]string{"spa", "--ssh"}, c.args...)...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q (want %q)", c.args, code, errOut, c.want)
		}
	}
}

// The SSH flags need --ssh.
func TestSPASSHFlagsNeedSSH(t *testing.T) {
	code, _, errOut := runSesameCode(t, "spa", "-A", "tcp/22", "-D", "127.0.0.1", "-i", "/some/key")
	if code != 1 || !strings.Contains(errOut, "--identity needs --ssh") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestSPASSHPassphrase: an encrypted key file's passphrase is asked on
// the terminal and typed there without echo, as a person would: the
// command runs in a tmux pane (its own server on a private socket), the
// test waits for the prompt, types, and reads the screen.
func TestSPASSHPassphrase(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux not installed (make deps): %v", err)
	}
	dir := t.TempDir()
	k := sshtest.KeyGen(t, dir, "locked", "ed25519", 0, "open sesame", "alice@laptop")
	srv := newSPAServer(t, "127.0.0.1", `open="tcp/22" `+k.Line+"\n")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "tmux")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := sockDir + "/s"
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	line := strings.Join([]string{"env", runMainEnv + "=1", self, "spa", "--ssh", "-A", "tcp/22", "-D", "127.0.0.1", "-p", srv.port, "-i", k.Path}, " ")
	tmux("new-session", "-d", "-x", "200", "-y", "20", line+"; echo EXIT=$?; sleep 600")
	defer exec.Command("tmux", "-S", sock, "kill-server").Run()
	waitFor := func(what string) string {
		for deadline := time.Now().Add(60 * time.Second); ; {
			screen := tmux("capture-pane", "-p")
			if strings.Contains(screen, what) {
				return screen
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q on the screen:\n%s", what, screen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("Enter passphrase for " + k.Path)
	tmux("send-keys", "-l", "open sesame")
	tmux("send-keys", "Enter")
	screen := waitFor("EXIT=")
	if !strings.Contains(screen, "EXIT=0") || strings.Contains(screen, "open sesame") {
		t.Errorf("screen:\n%s", screen)
	}
	if _, vd := srv.receive(t); vd.Reason != sshknock.Accepted {
		t.Fatalf("%s %s", vd.Reason, vd.Detail)
	}
}
