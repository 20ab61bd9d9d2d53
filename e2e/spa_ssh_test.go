package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/sshknock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// SSH-signed knocks end to end: keys made by Debian's ssh-keygen at test
// time, a real ssh-agent, `sesame spa --ssh` in the client namespace and
// sesamed with SPA_Authorized_Keys in the server namespace.

func fp(k sshtest.Key) string { return sshknock.FingerprintOf(k.Public).String() }

// authLine is k's authorized_keys line with options.
func authLine(options string, k sshtest.Key) string { return options + " " + k.Line + "\n" }

// ed25519 through a real ssh-agent (IPv4 and IPv6) and from a key file,
// ECDSA and RSA keys from files: each knock opens the port for its key,
// and the grant names the key's comment and fingerprint (journald
// SESAME_USER, SESAME_KEY), as sesame grants does.
func TestSPASSHKeysOpenSesamed(t *testing.T) {
	netnstest.RequireRoot(t)
	sshtest.RequireOpenSSH(t)
	t.Parallel()
	dir := t.TempDir()
	ed := sshtest.KeyGen(t, dir, "ed", "ed25519", 0, "", "alice@laptop")
	edFile := sshtest.KeyGen(t, dir, "edfile", "ed25519", 0, "", "alice@desk")
	ec := sshtest.KeyGen(t, dir, "ec", "ecdsa", 256, "", "bob@phone")
	rsa := sshtest.KeyGen(t, dir, "rsa", "rsa", 3072, "", "carol@old")
	ag := sshtest.StartAgent(t)
	ag.Add(t, ed)
	keys := authLine(`open="tcp/2222",timeout="30"`, ed) + authLine(`open="tcp/2222"`, edFile) +
		authLine(`open="tcp/2222"`, ec) + authLine(`open="tcp/2222"`, rsa)
	s := startSPA(t, "nftables", "", keys)
	agentEnv := []string{"SSH_AUTH_SOCK=" + ag.Socket}

	if s.reach(netnstest.ServerAddr4) {
		t.Fatal("port open before any knock")
	}
	s.sesameSpa(agentEnv, "--ssh", "-A", "tcp/2222", "-D", netnstest.ServerAddr4.String())
	s.opens(netnstest.ServerAddr4, "ed25519 through the agent")
	s.waitLine(1, "access granted", "door=ssh", "auth=ssh", "user=alice@laptop", fp(ed))
	s.sesameSpa(agentEnv, "--ssh", "-6", "-A", "tcp/2222", "-D", netnstest.ServerAddr6.String())
	s.opens(netnstest.ServerAddr6, "ed25519 through the agent over IPv6")
	s.waitLine(1, "access granted", "source="+netnstest.ClientAddr6.String(), "user=alice@laptop")
	for _, k := range []sshtest.Key{edFile, ec, rsa} {
		s.sesameSpa(nil, "--ssh", "-i", k.Path, "-A", "tcp/2222", "-D", netnstest.ServerAddr4.String())
		s.waitLine(1, "access granted", "user="+k.Comment, fp(k))
	}
	out := s.p.Server.MustRun(bin("sesame"), "grants", "--socket", filepath.Join(s.dir, "control.sock"))
	for _, who := range []string{"alice@laptop", "alice@desk", "bob@phone", "carol@old"} {
		if !strings.Contains(out, `"`+who+`" (ssh)`) {
			t.Errorf("sesame grants lacks %s:\n%s", who, out)
		}
	}
}

// A key not listed, a port its line does not allow, a source outside
// from=, an expired key, a packet for another server address, a stale
// packet and a replayed one (also after a restart) are refused, each
// with its reason, and open nothing.
func TestSPASSHRefusals(t *testing.T) {
	netnstest.RequireRoot(t)
	sshtest.RequireOpenSSH(t)
	t.Parallel()
	dir := t.TempDir()
	good := sshtest.KeyGen(t, dir, "good", "ed25519", 0, "", "good@key")
	far := sshtest.KeyGen(t, dir, "far", "ed25519", 0, "", "far@away")
	old := sshtest.KeyGen(t, dir, "old", "ed25519", 0, "", "old@key")
	stranger := sshtest.KeyGen(t, dir, "stranger", "ed25519", 0, "", "stranger")
	keys := authLine(`open="tcp/2222"`, good) + authLine(`open="tcp/2222",from="10.99.0.0/16"`, far) +
		authLine(`open="tcp/2222",expiry-time="20200101"`, old)
	s := startSPA(t, "nftables", "", keys)
	srv := netnstest.ServerAddr4.String()
	knock := func(k sshtest.Key, args ...string) {
		s.sesameSpa(nil, append([]string{"--ssh", "-i", k.Path, "-D", srv}, args...)...)
	}
	knock(stranger, "-A", "tcp/2222")
	s.waitLine(1, "refused", "reason=unknown-key")
	knock(good, "-A", "tcp/2223")
	s.waitLine(1, "refused", "reason=port-not-allowed", "user=good@key")
	knock(far, "-A", "tcp/2222")
	s.waitLine(1, "refused", "reason=source-not-allowed", "user=far@away")
	knock(old, "-A", "tcp/2222")
	s.waitLine(1, "refused", "reason=key-expired", "user=old@key")
	knock(good, "-A", "tcp/2222", "--server-addr", "10.77.0.9")
	s.waitLine(1, "refused", "reason=wrong-server", "server=10.77.0.9")
	knock(good, "-A", "tcp/2222", "--time-offset-minus", "300sec")
	s.waitLine(1, "refused", "reason=stale", "user=good@key")
	if s.grants() != 0 || s.reach(netnstest.ServerAddr4) {
		t.Fatalf("a refused knock opened: %d grants", s.grants())
	}
	// A replay: the saved packet, sent again.
	file := filepath.Join(t.TempDir(), "knock")
	knock(good, "-A", "tcp/2222", "-B", file)
	s.opens(netnstest.ServerAddr4, "the good knock")
	b64, _ := os.ReadFile(file)
	pkt, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	s.sendUDP(netnstest.ServerAddr4, pkt)
	s.waitLine(1, "refused", "reason=replay", "auth=ssh")
	s.restart()
	s.sendUDP(netnstest.ServerAddr4, pkt)
	s.waitLine(1, "refused", "reason=replay", "auth=ssh")
	if n := s.count("OPEN SESAME"); n != 0 {
		t.Errorf("%d opens after the restart, want none", n)
	}
}

// Removing a key's line and reloading (SIGHUP, as systemctl reload)
// revokes its grants; the other key's grant stays and it still opens.
func TestSPASSHRemovedKeyIsRevokedOnReload(t *testing.T) {
	netnstest.RequireRoot(t)
	sshtest.RequireOpenSSH(t)
	t.Parallel()
	dir := t.TempDir()
	alice := sshtest.KeyGen(t, dir, "alice", "ed25519", 0, "", "alice")
	bob := sshtest.KeyGen(t, dir, "bob", "ed25519", 0, "", "bob")
	s := startSPA(t, "nftables", "", authLine(`open="tcp/2222",timeout="300"`, alice)+authLine(`open="tcp/2222",timeout="300"`, bob))
	// alice from 10.77.0.2, bob from 10.77.0.3.
	s.p.Client.MustRun("ip", "addr", "add", "10.77.0.3/24", "dev", netnstest.ClientIf)
	bobAddr := netip.MustParseAddr("10.77.0.3")
	s.sesameSpa(nil, "--ssh", "-i", alice.Path, "-A", "tcp/2222", "-D", netnstest.ServerAddr4.String())
	s.sesameSpa(nil, "--ssh", "-i", bob.Path, "-A", "tcp/2222", "-a", bobAddr.String(), "-D", netnstest.ServerAddr4.String())
	s.opens(netnstest.ServerAddr4, "alice's knock")
	if !poll(10*time.Second, func() bool { return connects(s.p.Client, bobAddr, netnstest.ServerAddr4) }) {
		t.Fatal("bob's knock did not open")
	}
	s.write("authorized_keys", authLine(`open="tcp/2222",timeout="300"`, bob))
	if err := s.d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitLine(1, "no longer in SPA_Authorized_Keys: revoking its 1 grants", fp(alice))
	s.waitLine(1, "access revoked", `reason="key removed"`, "user=alice")
	if !poll(10*time.Second, func() bool { return !s.reach(netnstest.ServerAddr4) }) {
		t.Fatal("alice still gets in after her key's line went")
	}
	if !connects(s.p.Client, bobAddr, netnstest.ServerAddr4) {
		t.Error("bob's grant went with alice's")
	}
	s.sesameSpa(nil, "--ssh", "-i", alice.Path, "-A", "tcp/2222", "-D", netnstest.ServerAddr4.String())
	s.waitLine(1, "refused", "reason=unknown-key")
}

// A flood of 20,000 forged packets per second naming alice's key (fresh,
// for this server, each with its own nonce: every one would cost a
// signature check) from a few spoofed addresses, mixed with forged
// packets naming unknown keys from thousands of addresses, does not
// keep alice out: her knock opens during it.
func TestSPASSHForgedFloodDoesNotKeepAKeyOut(t *testing.T) {
	netnstest.RequireRoot(t)
	sshtest.RequireOpenSSH(t)
	t.Parallel()
	dir := t.TempDir()
	alice := sshtest.KeyGen(t, dir, "alice", "ed25519", 0, "", "alice")
	mallory := sshtest.KeyGen(t, dir, "mallory", "ed25519", 0, "", "mallory")
	s := startSPA(t, "nftables", "", authLine(`open="tcp/2222"`, alice))
	victim := sshknock.FingerprintOf(alice.Public)
	signer := mallory.Signer(t)
	const n = 2048
	payloads := make([][]byte, n)
	now := time.Now()
	for i := range payloads {
		pkt, err := sshknock.Build(rand.Reader, signer, sshknock.Knock{Server: netnstest.ServerAddr4,
			Ports: []knock.Port{{Num: protected, Proto: knock.TCP}}}, now)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			copy(pkt[9:], victim[:]) // alice's fingerprint, mallory's signature
		}
		payloads[i] = pkt
	}
	frames := udpFrames(t, s.p, payloads, func(i int) netip.Addr {
		if i%2 == 0 {
			return spoofed(i/2, 4) // the forgeries of alice's key: 4 addresses
		}
		return spoofed(100+i, 4000)
	})
	f := flood(t, s.p, frames, 20000)
	s.waitLine(1, "refused", "reason=bad-signature", "user=alice")
	s.waitLine(1, "refused", "reason=source-budget")
	time.Sleep(time.Second)
	sent := time.Now()
	s.sesameSpa(nil, "--ssh", "-i", alice.Path, "-A", "tcp/2222", "-D", netnstest.ServerAddr4.String())
	s.opens(netnstest.ServerAddr4, "alice's knock during the flood")
	t.Logf("alice's knock during a 20k pps forged flood: open after %v", time.Since(sent).Round(time.Millisecond))
	f.halt(t)
	if f.sent.Load() < 20000 {
		t.Errorf("the flood sent only %d packets", f.sent.Load())
	}
	if s.grants() != 1 {
		t.Errorf("%d grants, want alice's", s.grants())
	}
}
