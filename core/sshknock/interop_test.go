package sshknock

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/sshsig"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

var interopKeys = []string{"ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa3072"}

// TestKnockVerifiedBySSHKeygen: the signature in a knock Build made, from
// a key file and through a real ssh-agent, is one `ssh-keygen -Y verify
// -n sesame-knock` accepts over the packet's signed body (FORMAT.md says
// how to rebuild it), and refuses over a body changed by one byte.
func TestKnockVerifiedBySSHKeygen(t *testing.T) {
	ag := sshtest.StartAgent(t)
	for _, n := range interopKeys {
		ag.Add(t, keygen(t, n))
	}
	keyring := ag.Keyring(t)
	for _, n := range interopKeys {
		k := keygen(t, n)
		as, _, err := AgentSigner(keyring, k.Comment)
		if err != nil {
			t.Fatal(err)
		}
		for via, s := range map[string]ssh.Signer{"file": k.Signer(t), "agent": as} {
			t.Run(n+"/"+via, func(t *testing.T) {
				checkWithSSHKeygen(t, s, k.Public)
			})
		}
	}
	// FIDO types (a software token: no hardware on test machines).
	for _, typ := range []string{ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256} {
		t.Run(typ, func(t *testing.T) {
			f := sshtest.NewFIDO(t, typ)
			checkWithSSHKeygen(t, f, f.PublicKey())
		})
	}
}

// checkWithSSHKeygen builds a knock with s and has ssh-keygen verify its
// signature over the body, and refuse it over a changed body.
func checkWithSSHKeygen(t *testing.T, s ssh.Signer, pub ssh.PublicKey) {
	t.Helper()
	pkt := build(t, s, Knock{Ports: []knock.Port{ssh22, dns}, Timeout: 10 * time.Second}, time.Now())
	p, err := Decode(pkt)
	if err != nil {
		t.Fatal(err)
	}
	armored, err := p.Armor(pub)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sshtest.VerifyWithSSHKeygen(t, pub, "", Namespace, armored, p.Body); err != nil {
		t.Fatalf("ssh-keygen -Y verify refused the knock: %v\n%s", err, out)
	}
	body := append([]byte(nil), p.Body...)
	body[offNonce] ^= 0x80
	if out, err := sshtest.VerifyWithSSHKeygen(t, pub, "", Namespace, armored, body); err == nil {
		t.Fatalf("ssh-keygen accepted a changed body:\n%s", out)
	}
}

// TestVerifierAcceptsSSHKeygenSignature: a client that has only
// ssh-keygen (`-Y sign -n sesame-knock`, default sha512 or sha256) and
// follows FORMAT.md makes knocks the Verifier accepts.
func TestVerifierAcceptsSSHKeygenSignature(t *testing.T) {
	var lines []string
	for _, n := range interopKeys {
		k := keygen(t, n)
		lines = append(lines, authLine(`open="tcp/22"`, k.Public, k.Comment))
	}
	ks := mustKeys(t, lines...)
	for _, n := range interopKeys {
		for _, h := range []string{"", sshsig.HashSHA256} {
			t.Run(n+"/"+h, func(t *testing.T) {
				k := keygen(t, n)
				now := time.Now()
				p := Packet{Fingerprint: FingerprintOf(k.Public), Time: now, Server: serverAddr}
				p.SetPorts([]knock.Port{ssh22})
				rand.Read(p.Nonce[:])
				body, err := appendBody(nil, &p)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := sshsig.ParseArmored(sshtest.SignWithSSHKeygen(t, k, Namespace, h, body))
				if err != nil {
					t.Fatal(err)
				}
				pkt := appendWireString(body, []byte(sig.HashAlg))
				pkt = appendWireString(pkt, ssh.Marshal(sig.Sig))
				v, _ := newVerifier(t, ks, Options{})
				if vd := v.Verify(pkt, clientAddr, now); vd.Reason != Accepted {
					t.Fatalf("%s %s", vd.Reason, vd.Detail)
				}
				if strings.HasPrefix(n, "rsa") && !strings.HasPrefix(sig.Sig.Format, "rsa-sha2-") {
					t.Errorf("ssh-keygen used %s", sig.Sig.Format)
				}
			})
		}
	}
}
