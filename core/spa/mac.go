package spa

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
)

// MaxHMACKeyLen is libfko's MAX_DIGEST_BLOCK_LEN (SHA3-256's block size):
// fwknop refuses longer HMAC keys.
const MaxHMACKeyLen = 136

// b64Salted is "Salted__" base64-encoded up to the characters that depend
// on the salt. libfko strips it from the packet (B64_RIJNDAEL_SALT) and
// puts it back before checking the HMAC, which covers it.
var b64Salted = []byte("U2FsdGVkX1")

// MAC checks packets' HMACs for one key. Verify does not allocate, so a
// flood of garbage costs one HMAC per packet and no garbage collection.
// A MAC is not safe for concurrent use: give each capture goroutine its
// own (package verify does).
type MAC struct {
	typ HashType
	h   hash.Hash
	// scratch for Verify; fields, not locals, so nothing escapes to the
	// heap through the hash.Hash interface.
	sum [64]byte
	enc [88]byte
}

// NewMAC returns a MAC for HMAC-typ with key (1 to MaxHMACKeyLen bytes).
func NewMAC(typ HashType, key []byte) (*MAC, error) {
	if len(key) == 0 || len(key) > MaxHMACKeyLen {
		return nil, fmt.Errorf("spa.NewMAC: HMAC key of %d bytes: want 1-%d", len(key), MaxHMACKeyLen)
	}
	m := &MAC{typ: typ, h: hmac.New(typ.New, key)}
	// The first Reset after New saves the keyed state; later ones restore
	// it without allocating.
	m.h.Reset()
	m.h.Reset()
	return m, nil
}

// Type is the HMAC's digest algorithm.
func (m *MAC) Type() HashType { return m.typ }

// Split separates pkt into the encrypted part and the base64 HMAC tag a
// packet authenticated by typ ends with. ok is false when pkt is too
// short to hold both.
func Split(pkt []byte, typ HashType) (body, tag []byte, ok bool) {
	n := typ.B64Len()
	if len(pkt) < n+minEncryptedLen {
		return nil, nil, false
	}
	return pkt[:len(pkt)-n], pkt[len(pkt)-n:], true
}

// Verify reports whether pkt (the packet text as received, see Precheck)
// ends with a valid HMAC of the rest. The comparison takes the same time
// wherever the first difference is.
func (m *MAC) Verify(pkt []byte) bool {
	body, tag, ok := Split(pkt, m.typ)
	if !ok {
		return false
	}
	m.h.Reset()
	m.h.Write(b64Salted)
	m.h.Write(body)
	sum := m.h.Sum(m.sum[:0])
	enc := m.enc[:len(tag)]
	base64.RawStdEncoding.Encode(enc, sum)
	return subtle.ConstantTimeCompare(enc, tag) == 1
}

// tag returns the base64 HMAC libfko appends for the encrypted text b64
// (which starts with "U2FsdGVkX1").
func tag(typ HashType, key, b64 []byte) []byte {
	h := hmac.New(typ.New, key)
	h.Write(b64)
	sum := h.Sum(nil)
	out := make([]byte, base64.RawStdEncoding.EncodedLen(len(sum)))
	base64.RawStdEncoding.Encode(out, sum)
	return out
}
