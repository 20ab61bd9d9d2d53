package sshtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FIDOSigner signs as a FIDO token does for OpenSSH's sk- key types: over
// SHA256(application) || flags || counter || SHA256(data), returning the
// signature with flags and counter after the blob. Flags is what the
// "token" reports (0x01 user present, 0x04 user verified); each signature
// increments Counter.
type FIDOSigner struct {
	Flags   byte
	Counter uint32
	pub     ssh.PublicKey
	app     string
	ed      ed25519.PrivateKey
	ec      *ecdsa.PrivateKey
}

// NewFIDO makes a software key of type typ (ssh.KeyAlgoSKED25519 or
// ssh.KeyAlgoSKECDSA256) for application "ssh:", reporting user presence.
func NewFIDO(tb testing.TB, typ string) *FIDOSigner {
	tb.Helper()
	s := &FIDOSigner{Flags: 0x01, app: "ssh:"}
	var blob []byte
	switch typ {
	case ssh.KeyAlgoSKED25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		s.ed = priv
		blob = ssh.Marshal(struct {
			Type, Key, App string
		}{typ, string(pub), s.app})
	case ssh.KeyAlgoSKECDSA256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		s.ec = priv
		point, err := priv.PublicKey.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		blob = ssh.Marshal(struct {
			Type, Curve, Point, App string
		}{typ, "nistp256", string(point), s.app})
	default:
		tb.Fatalf("NewFIDO: type %q", typ)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		tb.Fatalf("NewFIDO: %v", err)
	}
	s.pub = pub
	return s
}

// PublicKey returns the sk- public key.
func (s *FIDOSigner) PublicKey() ssh.PublicKey { return s.pub }

// Sign signs data as the token would.
func (s *FIDOSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s.Counter++
	rest := []byte{s.Flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rest[1:], s.Counter)
	appDigest := sha256.Sum256([]byte(s.app))
	dataDigest := sha256.Sum256(data)
	msg := append(append(append([]byte{}, appDigest[:]...), rest...), dataDigest[:]...)
	sig := &ssh.Signature{Format: s.pub.Type(), Rest: rest}
	switch {
	case s.ed != nil:
		sig.Blob = ed25519.Sign(s.ed, msg)
	case s.ec != nil:
		h := sha256.Sum256(msg)
		sr, ss, err := ecdsa.Sign(r, s.ec, h[:])
		if err != nil {
			return nil, fmt.Errorf("FIDOSigner: %w", err)
		}
		sig.Blob = ssh.Marshal(struct{ R, S *big.Int }{sr, ss})
	}
	return sig, nil
}
