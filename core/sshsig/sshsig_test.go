package sshsig_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/sshsig"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

const ns = "sesame-knock"

// keygenTypes are the key types ssh-keygen makes without hardware.
var keygenTypes = []struct {
	name, typ string
	bits      int
}{
	{"ed25519", "ed25519", 0},
	{"ecdsa256", "ecdsa", 256},
	{"ecdsa384", "ecdsa", 384},
	{"ecdsa521", "ecdsa", 521},
	{"rsa3072", "rsa", 3072},
}

// TestSignVerifiedBySSHKeygen: what Sign makes from a key file that
// ssh-keygen wrote, `ssh-keygen -Y verify -n sesame-knock` accepts, for
// every type and both hash algorithms; and it refuses the same signature
// over another message or in another namespace (so the check can fail).
func TestSignVerifiedBySSHKeygen(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	for _, kt := range keygenTypes {
		k := sshtest.KeyGen(t, dir, kt.name, kt.typ, kt.bits, "", kt.name+"@test")
		signer := k.Signer(t)
		for _, h := range []string{sshsig.HashSHA512, sshsig.HashSHA256} {
			t.Run(kt.name+"/"+h, func(t *testing.T) {
				msg := []byte("knock knock " + kt.name + h)
				sig, err := sshsig.Sign(rand.Reader, signer, ns, h, msg)
				if err != nil {
					t.Fatal(err)
				}
				if kt.typ == "rsa" && sig.Sig.Format != "rsa-sha2-"+strings.TrimPrefix(h, "sha") {
					t.Errorf("RSA signature format %q with %s", sig.Sig.Format, h)
				}
				if out, err := sshtest.VerifyWithSSHKeygen(t, k.Public, "", ns, sig.Armor(), msg); err != nil {
					t.Fatalf("ssh-keygen -Y verify refused: %v\n%s", err, out)
				}
				if out, err := sshtest.VerifyWithSSHKeygen(t, k.Public, "", ns, sig.Armor(), append(msg, '!')); err == nil {
					t.Fatalf("ssh-keygen accepted the signature over another message:\n%s", out)
				}
				if out, err := sshtest.VerifyWithSSHKeygen(t, k.Public, "", "file", sig.Armor(), msg); err == nil {
					t.Fatalf("ssh-keygen accepted the signature in another namespace:\n%s", out)
				}
			})
		}
	}
}

// TestVerifyAcceptsSSHKeygen: Verify accepts what `ssh-keygen -Y sign`
// makes (its default sha512 and sha256), and refuses it over another
// message, in another namespace, or for another key.
func TestVerifyAcceptsSSHKeygen(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	other := sshtest.KeyGen(t, dir, "other", "ed25519", 0, "", "other@test")
	for _, kt := range keygenTypes {
		k := sshtest.KeyGen(t, dir, kt.name, kt.typ, kt.bits, "", kt.name+"@test")
		for _, h := range []string{"", sshsig.HashSHA256} {
			t.Run(kt.name+"/"+h, func(t *testing.T) {
				msg := []byte("signed by ssh-keygen " + kt.name)
				sig, err := sshsig.ParseArmored(sshtest.SignWithSSHKeygen(t, k, ns, h, msg))
				if err != nil {
					t.Fatal(err)
				}
				want := h
				if want == "" {
					want = sshsig.HashSHA512
				}
				if sig.HashAlg != want || sig.Namespace != ns {
					t.Errorf("parsed hash %q namespace %q", sig.HashAlg, sig.Namespace)
				}
				if _, err := sshsig.Verify(k.Public, ns, msg, sig, sshsig.Policy{}); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if _, err := sshsig.Verify(k.Public, ns, append(msg, '!'), sig, sshsig.Policy{}); !errors.Is(err, sshsig.ErrBadSignature) {
					t.Errorf("other message: %v, want ErrBadSignature", err)
				}
				if _, err := sshsig.Verify(k.Public, "file", msg, sig, sshsig.Policy{}); !errors.Is(err, sshsig.ErrNamespace) {
					t.Errorf("other namespace: %v, want ErrNamespace", err)
				}
				if _, err := sshsig.Verify(other.Public, ns, msg, sig, sshsig.Policy{}); !errors.Is(err, sshsig.ErrKeyMismatch) {
					t.Errorf("other key: %v, want ErrKeyMismatch", err)
				}
				// Round trip: our encoding of what we parsed is ssh-keygen's.
				again, err := sshsig.ParseArmored(sig.Armor())
				if err != nil || !bytes.Equal(again.Marshal(), sig.Marshal()) {
					t.Errorf("re-armored blob differs (%v)", err)
				}
			})
		}
	}
}

// TestAgentSignature: signing through a real ssh-agent (ed25519, ECDSA,
// RSA with rsa-sha2-512) gives signatures ssh-keygen accepts.
func TestAgentSignature(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	ag := sshtest.StartAgent(t)
	var keys []sshtest.Key
	for _, kt := range []struct {
		typ  string
		bits int
	}{{"ed25519", 0}, {"ecdsa", 384}, {"rsa", 3072}} {
		k := sshtest.KeyGen(t, dir, kt.typ, kt.typ, kt.bits, "", kt.typ+"@agent")
		ag.Add(t, k)
		keys = append(keys, k)
	}
	signers, err := ag.Keyring(t).Signers()
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != len(keys) {
		t.Fatalf("agent holds %d keys, want %d", len(signers), len(keys))
	}
	for i, s := range signers {
		msg := []byte("via the agent")
		sig, err := sshsig.Sign(rand.Reader, s, ns, sshsig.HashSHA512, msg)
		if err != nil {
			t.Fatalf("%s: %v", s.PublicKey().Type(), err)
		}
		if out, err := sshtest.VerifyWithSSHKeygen(t, keys[i].Public, "", ns, sig.Armor(), msg); err != nil {
			t.Fatalf("%s: ssh-keygen refused: %v\n%s", s.PublicKey().Type(), err, out)
		}
	}
}

// TestFIDO: signatures in the FIDO formats verify here and in ssh-keygen
// (which checks only the signature: presence and verification are the
// server's policy, as in sshd); missing user presence is refused unless
// the policy waives it (OpenSSH's no-touch-required), verify-required
// wants the UV flag, and flags changed after signing break the signature
// here and in ssh-keygen.
func TestFIDO(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	for _, typ := range []string{ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256} {
		t.Run(typ, func(t *testing.T) {
			s := sshtest.NewFIDO(t, typ)
			msg := []byte("touched")
			cases := []struct {
				flags   byte
				policy  sshsig.Policy
				wantErr error
			}{
				{0x01, sshsig.Policy{}, nil},
				{0x00, sshsig.Policy{}, sshsig.ErrNoUserPresence},
				{0x00, sshsig.Policy{NoTouchRequired: true}, nil},
				{0x01, sshsig.Policy{VerifyRequired: true}, sshsig.ErrNoUserVerification},
				{0x05, sshsig.Policy{VerifyRequired: true}, nil},
			}
			for _, c := range cases {
				s.Flags = c.flags
				sig, err := sshsig.Sign(rand.Reader, s, ns, sshsig.HashSHA512, msg)
				if err != nil {
					t.Fatal(err)
				}
				d, err := sshsig.Verify(s.PublicKey(), ns, msg, sig, c.policy)
				if !errors.Is(err, c.wantErr) {
					t.Errorf("flags %#x %+v: %v, want %v", c.flags, c.policy, err, c.wantErr)
				}
				if !d.FIDO || d.Flags != c.flags || d.Counter != s.Counter {
					t.Errorf("details %+v, want flags %#x counter %d", d, c.flags, s.Counter)
				}
				if out, err := sshtest.VerifyWithSSHKeygen(t, s.PublicKey(), "", ns, sig.Armor(), msg); err != nil {
					t.Errorf("flags %#x: ssh-keygen refused: %v\n%s", c.flags, err, out)
				}
				if _, err := sshsig.Verify(s.PublicKey(), ns, append(msg, 'x'), sig, c.policy); !errors.Is(err, sshsig.ErrBadSignature) {
					t.Errorf("other message: %v, want ErrBadSignature", err)
				}
				// Claim a touch that did not happen: the flags are signed.
				forged := *sig
				fs := *sig.Sig
				fs.Rest = append([]byte{c.flags | 0x05}, sig.Sig.Rest[1:]...)
				forged.Sig = &fs
				if c.flags != c.flags|0x05 {
					if _, err := sshsig.Verify(s.PublicKey(), ns, msg, &forged, sshsig.Policy{}); !errors.Is(err, sshsig.ErrBadSignature) {
						t.Errorf("flags %#x forged to %#x: %v, want ErrBadSignature", c.flags, fs.Rest[0], err)
					}
					if out, err := sshtest.VerifyWithSSHKeygen(t, s.PublicKey(), "", ns, forged.Armor(), msg); err == nil {
						t.Errorf("ssh-keygen accepted forged flags:\n%s", out)
					}
				}
			}
			// x/crypto/ssh's own verifier agrees with the encoding.
			s.Flags = 0x01
			data := sshsig.SignedData(ns, sshsig.HashSHA256, make([]byte, 32))
			sig, err := s.Sign(rand.Reader, data)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.PublicKey().Verify(data, sig); err != nil {
				t.Errorf("x/crypto/ssh refuses the software token's signature: %v", err)
			}
		})
	}
}

// TestRefusals covers what is refused without ssh-keygen: SHA-1 RSA
// signatures, a signature format that is not the key's, trailing bytes
// after a non-FIDO signature, unknown hash algorithms and malformed blobs.
func TestRefusals(t *testing.T) {
	sshtest.RequireOpenSSH(t)
	dir := t.TempDir()
	rsaKey := sshtest.KeyGen(t, dir, "rsa", "rsa", 3072, "", "rsa@test")
	edKey := sshtest.KeyGen(t, dir, "ed", "ed25519", 0, "", "ed@test")
	msg := []byte("m")
	digest, _ := sshsig.Digest(sshsig.HashSHA512, msg)
	data := sshsig.SignedData(ns, sshsig.HashSHA512, digest)

	// ssh-rsa (SHA-1) over the right data: valid RSA, refused algorithm.
	sha1Sig, err := rsaKey.Signer(t).(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsaKey.Public.Verify(data, sha1Sig); err != nil {
		t.Fatalf("the SHA-1 signature itself should be valid: %v", err)
	}
	if _, err := sshsig.VerifySignedData(rsaKey.Public, data, sha1Sig, sshsig.Policy{}); !errors.Is(err, sshsig.ErrAlgorithm) {
		t.Errorf("ssh-rsa signature: %v, want ErrAlgorithm", err)
	}

	edSig, err := edKey.Signer(t).Sign(rand.Reader, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sshsig.VerifySignedData(edKey.Public, data, edSig, sshsig.Policy{}); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	bad := *edSig
	bad.Rest = []byte{1, 0, 0, 0, 1}
	if _, err := sshsig.VerifySignedData(edKey.Public, data, &bad, sshsig.Policy{}); !errors.Is(err, sshsig.ErrFormat) {
		t.Errorf("trailing bytes: %v, want ErrFormat", err)
	}
	bad = *edSig
	bad.Format = ssh.KeyAlgoSKED25519
	if _, err := sshsig.VerifySignedData(edKey.Public, data, &bad, sshsig.Policy{}); !errors.Is(err, sshsig.ErrAlgorithm) {
		t.Errorf("other format: %v, want ErrAlgorithm", err)
	}
	if _, err := sshsig.Digest("md5", msg); !errors.Is(err, sshsig.ErrHashAlg) {
		t.Errorf("md5: %v", err)
	}
	if _, err := sshsig.Sign(rand.Reader, edKey.Signer(t), ns, "sha1", msg); !errors.Is(err, sshsig.ErrHashAlg) {
		t.Errorf("Sign sha1: %v", err)
	}

	good, err := sshsig.Sign(rand.Reader, edKey.Signer(t), ns, sshsig.HashSHA512, msg)
	if err != nil {
		t.Fatal(err)
	}
	blob := good.Marshal()
	for name, b := range map[string][]byte{
		"version 2":   append(append([]byte("SSHSIG"), 0, 0, 0, 2), blob[10:]...),
		"trailing":    append(append([]byte{}, blob...), 0),
		"truncated":   blob[:len(blob)-1],
		"no preamble": blob[1:],
	} {
		if _, err := sshsig.Parse(b); !errors.Is(err, sshsig.ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
	if _, err := sshsig.Parse(blob); err != nil {
		t.Errorf("good blob: %v", err)
	}
}

// FuzzParse: Parse and ParseArmored never panic, and what parses
// re-encodes to the same blob.
func FuzzParse(f *testing.F) {
	f.Add([]byte("SSHSIG\x00\x00\x00\x01"))
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgJKxoLBJBivUPNTUJUSslQTt2hD\njozKvHarKeN8uYFqgAAAADZm9vAAAAAAAAAFMAAAALc3NoLWVkMjU1MTkAAABAKNC4IEbt\nTq0Fb56xhtuE1/lK9H9RZJfON4o6hE9R4ZGFX98gy0+fFJ/1d2/RxnZky0Y7GojwrZkrHT\nFgCqVWAQ==\n-----END SSH SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := sshsig.ParseArmored(b); err == nil {
			b = s.Marshal()
		}
		s, err := sshsig.Parse(b)
		if err != nil {
			return
		}
		// The reserved field is dropped; compare with it empty.
		if again, err := sshsig.Parse(s.Marshal()); err != nil || again.Namespace != s.Namespace || again.HashAlg != s.HashAlg {
			t.Fatalf("re-parse: %v", err)
		}
		_, _ = sshsig.Verify(s.PublicKey, s.Namespace, b, s, sshsig.Policy{})
	})
}
