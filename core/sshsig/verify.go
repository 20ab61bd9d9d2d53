package sshsig

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"

	"golang.org/x/crypto/ssh"
)

// FIDO signature flags (sk-api.h).
const (
	FlagUserPresent  = 0x01 // the token was touched
	FlagUserVerified = 0x04 // PIN or biometric verified
)

// Policy is what a verifier requires of FIDO signatures beyond their
// validity, as OpenSSH's authorized_keys options say it.
type Policy struct {
	// NoTouchRequired accepts FIDO signatures without the user-presence
	// flag (OpenSSH's no-touch-required). By default presence is required.
	NoTouchRequired bool
	// VerifyRequired requires the user-verified flag (OpenSSH's
	// verify-required).
	VerifyRequired bool
}

// Details are what a FIDO signature carries besides the signature proper.
// They are zero for other key types.
type Details struct {
	FIDO    bool
	Flags   byte
	Counter uint32
}

// UserPresent reports whether the token saw a touch.
func (d Details) UserPresent() bool { return d.Flags&FlagUserPresent != 0 }

// UserVerified reports whether the token verified a PIN or biometric.
func (d Details) UserVerified() bool { return d.Flags&FlagUserVerified != 0 }

// VerifySignedData checks sig over data (the bytes the key signed, e.g.
// SignedData's result) by pub, under policy p. RSA signatures must be
// rsa-sha2-256 or rsa-sha2-512, other types' format must be the key's
// type, and only FIDO signatures may carry bytes after the blob (exactly
// flags and counter). The outcomes are those of Verify.
func VerifySignedData(pub ssh.PublicKey, data []byte, sig *ssh.Signature, p Policy) (Details, error) {
	switch t := pub.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA:
		if t == ssh.KeyAlgoRSA {
			if sig.Format != ssh.KeyAlgoRSASHA256 && sig.Format != ssh.KeyAlgoRSASHA512 {
				return Details{}, fmt.Errorf("%w: %q for an RSA key (want rsa-sha2-256 or rsa-sha2-512)", ErrAlgorithm, sig.Format)
			}
		} else if sig.Format != t {
			return Details{}, fmt.Errorf("%w: %q for a %s key", ErrAlgorithm, sig.Format, t)
		}
		if len(sig.Rest) != 0 {
			return Details{}, fmt.Errorf("%w: %d bytes after a %s signature", ErrFormat, len(sig.Rest), t)
		}
		if err := pub.Verify(data, sig); err != nil {
			return Details{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return Details{}, nil
	case ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return verifySK(pub, data, sig, p)
	default:
		return Details{}, fmt.Errorf("%w: %s", ErrKeyType, t)
	}
}

// verifySK checks a FIDO signature (PROTOCOL.u2f): the token signed
// SHA256(application) || flags || uint32 counter || SHA256(data), an
// Ed25519 signature over those bytes or an ECDSA P-256 one over their
// SHA-256. The policy is applied after the signature verified.
func verifySK(pub ssh.PublicKey, data []byte, sig *ssh.Signature, p Policy) (Details, error) {
	t := pub.Type()
	if sig.Format != t {
		return Details{}, fmt.Errorf("%w: %q for a %s key", ErrAlgorithm, sig.Format, t)
	}
	if len(sig.Rest) != 5 {
		return Details{}, fmt.Errorf("%w: FIDO signature has %d bytes of flags and counter (want 5)", ErrFormat, len(sig.Rest))
	}
	d := Details{FIDO: true, Flags: sig.Rest[0], Counter: binary.BigEndian.Uint32(sig.Rest[1:])}
	app, err := skApplication(pub)
	if err != nil {
		return Details{}, err
	}
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return Details{}, fmt.Errorf("%w: %s without a crypto key", ErrKeyType, t)
	}
	appDigest := sha256.Sum256(app)
	dataDigest := sha256.Sum256(data)
	msg := make([]byte, 0, 32+1+4+32)
	msg = append(msg, appDigest[:]...)
	msg = append(msg, sig.Rest...)
	msg = append(msg, dataDigest[:]...)

	valid := false
	switch k := cpk.CryptoPublicKey().(type) {
	case ed25519.PublicKey:
		valid = len(k) == ed25519.PublicKeySize && len(sig.Blob) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig.Blob)
	case *ecdsa.PublicKey:
		var rs struct {
			R, S *big.Int
			Rest []byte `ssh:"rest"`
		}
		if err := ssh.Unmarshal(sig.Blob, &rs); err != nil || len(rs.Rest) != 0 {
			return Details{}, fmt.Errorf("%w: ECDSA signature blob", ErrFormat)
		}
		h := sha256.Sum256(msg)
		valid = rs.R.Sign() > 0 && rs.S.Sign() > 0 && ecdsa.Verify(k, h[:], rs.R, rs.S)
	default:
		return Details{}, fmt.Errorf("%w: %s holds %T", ErrKeyType, t, k)
	}
	if !valid {
		return Details{}, ErrBadSignature
	}
	if !p.NoTouchRequired && !d.UserPresent() {
		return d, ErrNoUserPresence
	}
	if p.VerifyRequired && !d.UserVerified() {
		return d, ErrNoUserVerification
	}
	return d, nil
}

// skApplication returns the application string (usually "ssh:") at the
// end of a FIDO public key's wire encoding: string type, the key's own
// fields (one for Ed25519, curve and point for ECDSA), string application.
func skApplication(pub ssh.PublicKey) ([]byte, error) {
	fields := 3
	if pub.Type() == ssh.KeyAlgoSKECDSA256 {
		fields = 4
	}
	r := pub.Marshal()
	var s []byte
	for i := 0; i < fields; i++ {
		var ok bool
		if s, r, ok = ReadString(r); !ok {
			return nil, fmt.Errorf("%w: %s key encoding", ErrFormat, pub.Type())
		}
	}
	return s, nil
}
