package sshknock

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
)

// goSigner is an Ed25519 key made in Go: packet tests need no ssh-keygen.
func goSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPacketRoundTrip: what Build writes, Decode reads back field by field,
// and the layout is FORMAT.md's (magic, version, fixed offsets).
func TestPacketRoundTrip(t *testing.T) {
	s := goSigner(t)
	ports := []knock.Port{ssh22, https, dns}
	for _, k := range []Knock{
		{Server: serverAddr, Ports: ports},
		{Server: serverAddr6, Allow: clientAddr6, Ports: ports[:1], Timeout: 90 * time.Second},
		{Server: netip.AddrFrom16(serverAddr.As16()), Allow: netip.AddrFrom16(clientAddr.As16()), Ports: ports[1:], HashAlg: "sha256"},
	} {
		pkt, err := Build(rand.Reader, s, k, t0.Add(1500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if !IsPacket(pkt) || !bytes.HasPrefix(pkt, []byte("\x00SESAMEK\x01")) {
			t.Fatalf("prefix % x", pkt[:9])
		}
		fp := FingerprintOf(s.PublicKey())
		if !bytes.Equal(pkt[9:41], fp[:]) || binary.BigEndian.Uint64(pkt[41:49]) != uint64(t0.Unix()+1) {
			t.Errorf("fixed fields at the wrong offsets: % x", pkt[:65])
		}
		p, err := Decode(pkt)
		if err != nil {
			t.Fatal(err)
		}
		wantAlg := k.HashAlg
		if wantAlg == "" {
			wantAlg = "sha512"
		}
		if p.Fingerprint != fp || !p.Time.Equal(t0.Add(time.Second)) || p.Server != k.Server.Unmap() || p.Allow != k.Allow.Unmap() ||
			p.Timeout != k.Timeout || FormatAccess(p.Ports()) != FormatAccess(k.Ports) || string(p.HashAlg) != wantAlg {
			t.Errorf("decoded %+v from %+v", p, k)
		}
		if p.Nonce == ([NonceSize]byte{}) {
			t.Error("zero nonce")
		}
		body, err := appendBody(nil, &p)
		if err != nil || !bytes.Equal(body, p.Body) {
			t.Errorf("re-encoded body differs: %v", err)
		}
	}
}

// TestBuildRefuses: what a client must not send is refused before signing.
func TestBuildRefuses(t *testing.T) {
	s := goSigner(t)
	many := make([]knock.Port, MaxPorts+1)
	for i := range many {
		many[i] = knock.Port{Num: uint16(i + 1), Proto: knock.TCP}
	}
	for name, k := range map[string]Knock{
		"no server":      {Ports: []knock.Port{ssh22}},
		"no ports":       {Server: serverAddr},
		"too many ports": {Server: serverAddr, Ports: many},
		"duplicate port": {Server: serverAddr, Ports: []knock.Port{ssh22, ssh22}},
		"port 0":         {Server: serverAddr, Ports: []knock.Port{{Num: 0, Proto: knock.TCP}}},
		"icmp":           {Server: serverAddr, Ports: []knock.Port{{Num: 1, Proto: 1}}},
		"partial second": {Server: serverAddr, Ports: []knock.Port{ssh22}, Timeout: 1500 * time.Millisecond},
		"negative":       {Server: serverAddr, Ports: []knock.Port{ssh22}, Timeout: -time.Second},
		"hash sha1":      {Server: serverAddr, Ports: []knock.Port{ssh22}, HashAlg: "sha1"},
	} {
		if _, err := Build(rand.Reader, s, k, t0); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

// TestPacketSize: RSA-8192 (a key ssh-keygen made, in testdata) fits with
// one IPv4 port; with 32 ports and IPv6 addresses it does not, and Build
// says so rather than sending a datagram the server refuses.
func TestPacketSize(t *testing.T) {
	b, err := os.ReadFile("testdata/rsa8192")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile("testdata/rsa8192.pub")
	if err != nil {
		t.Fatal(err)
	}
	ks := mustKeys(t, `open="tcp/22" `+strings.TrimSpace(string(pub)))
	pkt, err := Build(rand.Reader, s, Knock{Server: serverAddr, Ports: []knock.Port{ssh22}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) > MaxPacket {
		t.Fatalf("%d bytes", len(pkt))
	}
	v, _ := newVerifier(t, ks, Options{})
	if vd := v.Verify(pkt, clientAddr, t0); vd.Reason != Accepted {
		t.Fatalf("RSA-8192: %s %s", vd.Reason, vd.Detail)
	}
	many := make([]knock.Port, MaxPorts)
	for i := range many {
		many[i] = knock.Port{Num: uint16(i + 1), Proto: knock.UDP}
	}
	if _, err := Build(rand.Reader, s, Knock{Server: serverAddr6, Allow: clientAddr6, Ports: many}, t0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("RSA-8192 with 32 ports and IPv6: %v, want ErrTooLarge", err)
	}
	t.Logf("RSA-8192 knock, one port: %d bytes", len(pkt))
}

// TestDecodeMalformed: each way a datagram can be wrong is ErrMalformed.
func TestDecodeMalformed(t *testing.T) {
	pkt, err := Build(rand.Reader, goSigner(t), Knock{Server: serverAddr, Ports: []knock.Port{ssh22}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets after the fixed fields with an IPv4 server and no allow address.
	const (
		offServerFam = offAddrs
		offAllowFam  = offAddrs + 5
		offCount     = offAllowFam + 1 + 4
		offPort      = offCount + 1
		offHash      = offPort + 3
	)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), pkt...)) }
	cases := map[string][]byte{
		"empty":             nil,
		"no magic":          mut(func(b []byte) []byte { b[0] = 'U'; return b }),
		"version 2":         mut(func(b []byte) []byte { b[offVersion] = 2; return b }),
		"short":             pkt[:minPacket-1],
		"too long":          append(append([]byte(nil), pkt...), make([]byte, MaxPacket)...),
		"trailing":          append(append([]byte(nil), pkt...), 0),
		"truncated sig":     pkt[:len(pkt)-1],
		"no server":         mut(func(b []byte) []byte { b[offServerFam] = 0; return b }),
		"family 5":          mut(func(b []byte) []byte { b[offAllowFam] = 5; return b }),
		"zero ports":        mut(func(b []byte) []byte { b[offCount] = 0; return b }),
		"33 ports":          mut(func(b []byte) []byte { b[offCount] = 33; return b }),
		"proto 1":           mut(func(b []byte) []byte { b[offPort] = 1; return b }),
		"port 0":            mut(func(b []byte) []byte { b[offPort+1], b[offPort+2] = 0, 0; return b }),
		"hash md5":          mut(func(b []byte) []byte { copy(b[offHash+4:], "md5512"); return b }),
		"huge timestamp":    mut(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offTime:], 1<<63); return b }),
		"hash len past end": mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offHash:], 1<<31); return b }),
	}
	// An IPv4-mapped address in family 6.
	mapped := append([]byte(nil), pkt[:offAddrs]...)
	mapped = append(mapped, family6)
	m := netip.AddrFrom16(serverAddr.As16()).As16()
	mapped = append(mapped, m[:]...)
	mapped = append(mapped, pkt[offAddrs+5:]...)
	cases["v4-mapped in family 6"] = mapped
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Decode(pkt); err != nil {
		t.Fatalf("the unmutated packet: %v", err)
	}
}

// TestMagicIsNotBase64: fwknop packets are base64 text; no base64
// character is the magic's first byte, so the two kinds cannot be
// confused on the shared port.
func TestMagicIsNotBase64(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
	for i := 0; i < len(alphabet); i++ {
		b := append([]byte{alphabet[i]}, Magic[1:]...)
		if IsPacket(b) {
			t.Errorf("%q starts a knock", alphabet[i])
		}
	}
	if strings.IndexByte(alphabet, Magic[0]) >= 0 {
		t.Error("the magic starts with a base64 character")
	}
}

// FuzzDecode: Decode never panics; what it accepts re-encodes to the same
// bytes; the Verifier never panics and refuses whatever is not signed.
func FuzzDecode(f *testing.F) {
	s := goSigner(f)
	for _, k := range []Knock{
		{Server: serverAddr, Ports: []knock.Port{ssh22}},
		{Server: serverAddr6, Allow: clientAddr6, Ports: []knock.Port{ssh22, https, dns}, Timeout: time.Minute, HashAlg: "sha256"},
	} {
		pkt, err := Build(rand.Reader, s, k, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	f.Add([]byte(Magic + "\x01"))
	ks := mustKeys(f, authLine(`open="tcp/22,tcp/443,udp/53"`, s.PublicKey(), "fuzz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err == nil {
			body, err := appendBody(nil, &p)
			if err != nil || !bytes.Equal(body, p.Body) {
				t.Fatalf("re-encode: %v", err)
			}
			tail := appendWireString(appendWireString(nil, p.HashAlg), p.Signature)
			if !bytes.Equal(append(body, tail...), b) {
				t.Fatal("decode/encode not the identity")
			}
		}
		v, _ := newVerifier(t, ks, Options{})
		vd := v.Verify(b, clientAddr, t0)
		if vd.Reason == Accepted {
			// Only Build's seeds carry a valid signature: accepted bytes
			// must decode to a packet that re-verifies under SSHSIG.
			if _, err := verifySignature(ks.List[0], &p); err != nil {
				t.Fatalf("accepted a packet whose signature fails: %v", err)
			}
		}
	})
}
