package sshknock

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// TestFormatExample: the example in FORMAT.md is what Build makes from
// the inputs it states, the Verifier accepts it, and ssh-keygen -Y verify
// accepts its signature rebuilt as the document says. So the document
// cannot drift from the code.
func TestFormatExample(t *testing.T) {
	doc, err := os.ReadFile("FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	var pkt []byte
	dump := regexp.MustCompile(`(?m)^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2})+)`)
	for _, m := range dump.FindAllSubmatch(doc, -1) {
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(m[1])), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		pkt = append(pkt, b...)
	}
	keyLine := regexp.MustCompile("The key `(ssh-ed25519 [A-Za-z0-9+/=]+)`").FindSubmatch(doc)
	if keyLine == nil || len(pkt) == 0 {
		t.Fatal("FORMAT.md has no example key or packet")
	}

	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5e}, 32))
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))); got != string(keyLine[1]) {
		t.Fatalf("FORMAT.md's key %s is not the seed's %s", keyLine[1], got)
	}
	when := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	server := netip.MustParseAddr("192.0.2.1")
	built, err := Build(bytes.NewReader([]byte("0123456789abcdef")), s, Knock{
		Server: server, Ports: []knock.Port{ssh22, https}, Timeout: time.Minute,
	}, when)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, pkt) {
		t.Fatalf("FORMAT.md's example is not what Build makes now:\n%s", hex.Dump(built))
	}

	ks := mustKeys(t, `open="tcp/22,tcp/443",timeout="60" `+string(keyLine[1]))
	v, err := NewVerifier(ks, Options{IsLocal: func(a netip.Addr) bool { return a == server }, Replay: newReplay()})
	if err != nil {
		t.Fatal(err)
	}
	if vd := v.Verify(pkt, clientAddr, when); vd.Reason != Accepted || vd.Request.Timeout != time.Minute {
		t.Fatalf("%s %s %v", vd.Reason, vd.Detail, vd.Request.Timeout)
	}
	p, _ := Decode(pkt)
	armored, err := p.Armor(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sshtest.VerifyWithSSHKeygen(t, s.PublicKey(), "", Namespace, armored, p.Body); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}
