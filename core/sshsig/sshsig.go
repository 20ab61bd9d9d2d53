package sshsig

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	// Preamble opens every SSHSIG blob and the data that is signed.
	Preamble = "SSHSIG"
	// Version is the only blob version defined (and accepted).
	Version = 1

	// HashSHA256 and HashSHA512 are the hash algorithms SSHSIG allows;
	// ssh-keygen uses sha512 unless told otherwise.
	HashSHA256 = "sha256"
	HashSHA512 = "sha512"

	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
)

// Signature is one SSHSIG blob, parsed.
type Signature struct {
	PublicKey ssh.PublicKey  // the key that made it, as the blob names it
	Namespace string         // never empty
	HashAlg   string         // HashSHA256 or HashSHA512
	Sig       *ssh.Signature // the key's signature over SignedData
}

// Digest hashes message with hashAlg (HashSHA256 or HashSHA512). The
// outcomes are the digest, or ErrHashAlg.
func Digest(hashAlg string, message []byte) ([]byte, error) {
	switch hashAlg {
	case HashSHA256:
		d := sha256.Sum256(message)
		return d[:], nil
	case HashSHA512:
		d := sha512.Sum512(message)
		return d[:], nil
	}
	return nil, fmt.Errorf("%w %q", ErrHashAlg, hashAlg)
}

// SignedData returns what the key signs for a message whose hash under
// hashAlg is digest: "SSHSIG", string namespace, string reserved (empty),
// string hash_algorithm, string H(message).
func SignedData(namespace, hashAlg string, digest []byte) []byte {
	b := make([]byte, 0, len(Preamble)+4*4+len(namespace)+len(hashAlg)+len(digest))
	b = append(b, Preamble...)
	b = appendString(b, []byte(namespace))
	b = appendString(b, nil)
	b = appendString(b, []byte(hashAlg))
	return appendString(b, digest)
}

// Sign makes an SSHSIG signature of message in namespace with signer,
// hashing with hashAlg as `ssh-keygen -Y sign -O hashalg=...` does. RSA
// keys sign with rsa-sha2-256 or rsa-sha2-512 (matching hashAlg), so the
// signer must be an ssh.AlgorithmSigner (key files and ssh-agent signers
// are). The signature is checked against the signer's public key before
// it is returned, so an agent that answers with something else is caught
// here; FIDO user-presence is not required by that check (the server
// decides).
func Sign(rand io.Reader, signer ssh.Signer, namespace, hashAlg string, message []byte) (*Signature, error) {
	if namespace == "" {
		return nil, fmt.Errorf("sshsig.Sign: empty namespace")
	}
	digest, err := Digest(hashAlg, message)
	if err != nil {
		return nil, fmt.Errorf("sshsig.Sign: %w", err)
	}
	data := SignedData(namespace, hashAlg, digest)
	pub := signer.PublicKey()
	var sig *ssh.Signature
	if pub.Type() == ssh.KeyAlgoRSA {
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("sshsig.Sign: RSA signer cannot choose rsa-sha2 algorithms: %w", ErrAlgorithm)
		}
		alg := ssh.KeyAlgoRSASHA512
		if hashAlg == HashSHA256 {
			alg = ssh.KeyAlgoRSASHA256
		}
		sig, err = as.SignWithAlgorithm(rand, data, alg)
	} else {
		sig, err = signer.Sign(rand, data)
	}
	if err != nil {
		return nil, fmt.Errorf("sshsig.Sign %s: %w", pub.Type(), err)
	}
	if _, err := VerifySignedData(pub, data, sig, Policy{NoTouchRequired: true}); err != nil {
		return nil, fmt.Errorf("sshsig.Sign %s: the signer's signature does not verify: %w", pub.Type(), err)
	}
	return &Signature{PublicKey: pub, Namespace: namespace, HashAlg: hashAlg, Sig: sig}, nil
}

// Marshal returns the binary SSHSIG blob.
func (s *Signature) Marshal() []byte {
	var b []byte
	b = append(b, Preamble...)
	b = binary.BigEndian.AppendUint32(b, Version)
	b = appendString(b, s.PublicKey.Marshal())
	b = appendString(b, []byte(s.Namespace))
	b = appendString(b, nil)
	b = appendString(b, []byte(s.HashAlg))
	return appendString(b, ssh.Marshal(s.Sig))
}

// Armor returns the blob in the armored text form ssh-keygen reads and
// writes (base64 lines of 70 characters between BEGIN and END lines).
func (s *Signature) Armor() []byte {
	enc := base64.StdEncoding.EncodeToString(s.Marshal())
	var b bytes.Buffer
	b.WriteString(armorBegin + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + armorEnd + "\n")
	return b.Bytes()
}

// Parse parses a binary SSHSIG blob. The outcomes are the signature, or
// an error wrapping ErrFormat (including versions other than 1, an empty
// namespace and trailing bytes) or ErrKeyType (a key x/crypto/ssh cannot
// parse). The reserved field is ignored, as PROTOCOL.sshsig says.
func Parse(blob []byte) (*Signature, error) {
	if !bytes.HasPrefix(blob, []byte(Preamble)) {
		return nil, fmt.Errorf("%w: no %s preamble", ErrFormat, Preamble)
	}
	r := blob[len(Preamble):]
	if len(r) < 4 {
		return nil, fmt.Errorf("%w: truncated", ErrFormat)
	}
	if v := binary.BigEndian.Uint32(r); v != Version {
		return nil, fmt.Errorf("%w: version %d (want %d)", ErrFormat, v, Version)
	}
	r = r[4:]
	var fields [5][]byte
	for i := range fields {
		var ok bool
		if fields[i], r, ok = ReadString(r); !ok {
			return nil, fmt.Errorf("%w: truncated field %d", ErrFormat, i+1)
		}
	}
	if len(r) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(r))
	}
	pub, err := ssh.ParsePublicKey(fields[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyType, err)
	}
	if len(fields[1]) == 0 {
		return nil, fmt.Errorf("%w: empty namespace", ErrFormat)
	}
	sig, err := ParseSSHSignature(fields[4])
	if err != nil {
		return nil, err
	}
	return &Signature{PublicKey: pub, Namespace: string(fields[1]), HashAlg: string(fields[3]), Sig: sig}, nil
}

// ParseArmored parses the armored text form. Whitespace around and inside
// the base64 lines is ignored; the BEGIN and END lines are required.
func ParseArmored(text []byte) (*Signature, error) {
	s := strings.TrimSpace(string(text))
	if len(s) < len(armorBegin)+len(armorEnd) || !strings.HasPrefix(s, armorBegin) || !strings.HasSuffix(s, armorEnd) {
		return nil, fmt.Errorf("%w: missing %q or %q", ErrFormat, armorBegin, armorEnd)
	}
	s = s[len(armorBegin) : len(s)-len(armorEnd)]
	s = strings.Join(strings.Fields(s), "")
	blob, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return Parse(blob)
}

// ParseSSHSignature parses an SSH signature in its wire encoding (string
// format, string blob, then for FIDO types byte flags and uint32 counter).
func ParseSSHSignature(b []byte) (*ssh.Signature, error) {
	format, r, ok := ReadString(b)
	if !ok {
		return nil, fmt.Errorf("%w: truncated signature format", ErrFormat)
	}
	blob, r, ok := ReadString(r)
	if !ok {
		return nil, fmt.Errorf("%w: truncated signature blob", ErrFormat)
	}
	sig := &ssh.Signature{Format: string(format), Blob: blob}
	if len(r) > 0 {
		sig.Rest = r
	}
	return sig, nil
}

// Verify checks that sig is a valid SSHSIG signature of message by pub in
// namespace, under policy p. The outcomes are the FIDO details (zero for
// other key types) and nil; or an error wrapping one of ErrKeyMismatch,
// ErrNamespace, ErrHashAlg, ErrAlgorithm, ErrKeyType, ErrFormat,
// ErrBadSignature, ErrNoUserPresence, ErrNoUserVerification. Policy is
// checked only after the signature verified.
func Verify(pub ssh.PublicKey, namespace string, message []byte, sig *Signature, p Policy) (Details, error) {
	if !bytes.Equal(sig.PublicKey.Marshal(), pub.Marshal()) {
		return Details{}, ErrKeyMismatch
	}
	if sig.Namespace != namespace {
		return Details{}, fmt.Errorf("%w: %q (want %q)", ErrNamespace, sig.Namespace, namespace)
	}
	digest, err := Digest(sig.HashAlg, message)
	if err != nil {
		return Details{}, err
	}
	return VerifySignedData(pub, SignedData(namespace, sig.HashAlg, digest), sig.Sig, p)
}

// ReadString reads one SSH string (uint32 length, then the bytes) from b.
// The outcomes are the string (a sub-slice of b), the rest, and whether
// b held a whole string.
func ReadString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, b, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, b, false
	}
	return b[4 : 4+n], b[4+n:], true
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
