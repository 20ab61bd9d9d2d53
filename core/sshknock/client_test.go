package sshknock

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/sshtest"
)

// TestAgentSigner: a key is picked from a real ssh-agent by comment or by
// fingerprint; several keys without --key, an unknown one, or an empty
// agent are errors that say what the agent holds.
func TestAgentSigner(t *testing.T) {
	ag := sshtest.StartAgent(t)
	keyring := ag.Keyring(t)
	if _, _, err := AgentSigner(keyring, ""); !errors.Is(err, ErrNoKey) {
		t.Errorf("empty agent: %v", err)
	}
	ed, ec := keygen(t, "ed25519"), keygen(t, "ecdsa384")
	ag.Add(t, ed)
	s, k, err := AgentSigner(keyring, "")
	if err != nil || k.Comment != ed.Comment || FingerprintOf(s.PublicKey()) != FingerprintOf(ed.Public) {
		t.Fatalf("the only key: %v %v", k, err)
	}
	ag.Add(t, ec)
	if _, _, err := AgentSigner(keyring, ""); !errors.Is(err, ErrAmbiguousKey) || !strings.Contains(err.Error(), ec.Comment) || !strings.Contains(err.Error(), ed.Comment) {
		t.Errorf("two keys, no --key: %v", err)
	}
	if s, _, err := AgentSigner(keyring, ec.Comment); err != nil || FingerprintOf(s.PublicKey()) != FingerprintOf(ec.Public) {
		t.Errorf("by comment: %v", err)
	}
	fp := FingerprintOf(ed.Public).String()
	if s, _, err := AgentSigner(keyring, fp); err != nil || FingerprintOf(s.PublicKey()) != FingerprintOf(ed.Public) {
		t.Errorf("by fingerprint: %v", err)
	}
	if _, _, err := AgentSigner(keyring, "nobody@nowhere"); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), ed.Comment) {
		t.Errorf("no match: %v", err)
	}
	// What the agent picked signs knocks a Verifier accepts.
	s, _, _ = AgentSigner(keyring, ec.Comment)
	v, _ := newVerifier(t, mustKeys(t, authLine(`open="tcp/22"`, ec.Public, "x")), Options{})
	if vd := v.Verify(build(t, s, Knock{}, t0), clientAddr, t0); vd.Reason != Accepted {
		t.Errorf("agent-signed knock: %s %s", vd.Reason, vd.Detail)
	}
	if _, _, err := DialAgent(""); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Errorf("DialAgent without a socket: %v", err)
	}
	a, c, err := DialAgent(ag.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if keys, err := a.List(); err != nil || len(keys) != 2 {
		t.Errorf("DialAgent: %d keys, %v", len(keys), err)
	}
}

// TestLoadKeyFile: a passphrase-protected key made by ssh-keygen asks for
// its passphrase once; a wrong one, or none available, is an error; a
// plain key asks nothing.
func TestLoadKeyFile(t *testing.T) {
	locked := keygen(t, "locked")
	asked := 0
	ask := func(pw string) func() ([]byte, error) {
		return func() ([]byte, error) { asked++; return []byte(pw), nil }
	}
	s, err := LoadKeyFile(locked.Path, ask("open sesame"))
	if err != nil || asked != 1 || FingerprintOf(s.PublicKey()) != FingerprintOf(locked.Public) {
		t.Fatalf("right passphrase: %v, asked %d", err, asked)
	}
	if _, err := LoadKeyFile(locked.Path, ask("open barley")); err == nil {
		t.Error("wrong passphrase accepted")
	}
	if _, err := LoadKeyFile(locked.Path, nil); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("no way to ask: %v", err)
	}
	if _, err := LoadKeyFile(locked.Path, func() ([]byte, error) { return nil, errors.New("no terminal") }); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("asking failed: %v", err)
	}
	asked = 0
	if _, err := LoadKeyFile(keygen(t, "ed25519").Path, ask("x")); err != nil || asked != 0 {
		t.Errorf("plain key: %v, asked %d", err, asked)
	}
	if _, err := LoadKeyFile(locked.Path+".missing", nil); err == nil {
		t.Error("missing file")
	}
}

// TestSend: the datagram arrives whole on a loopback socket, IPv4 and IPv6.
func TestSend(t *testing.T) {
	pkt := build(t, goSigner(t), Knock{}, t0)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dst := netip.MustParseAddrPort(c.LocalAddr().String())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := Send(ctx, pkt, dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2*MaxPacket)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil || string(buf[:n]) != string(pkt) {
			t.Fatalf("%s: got %d bytes, %v", addr, n, err)
		}
	}
}
