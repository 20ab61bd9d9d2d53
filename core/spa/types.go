package spa

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
	"strings"
)

// Mode is a Rijndael mode of operation as fwknop names it (its
// ENCRYPTION_MODE and the client's -M). The zero value is CBC, fwknop's
// default.
type Mode uint8

const (
	CBC Mode = iota
	ECB
	CFB // 128-bit cipher feedback
	OFB
	CTR
	// Legacy is CBC with fwknop's pre-2.5 key handling: a key shorter than
	// 16 bytes is padded with '0' characters, a longer one is cut to 16.
	Legacy
)

var modeNames = [...]string{CBC: "CBC", ECB: "ECB", CFB: "CFB", OFB: "OFB", CTR: "CTR", Legacy: "legacy"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode accepts fwknop's mode names in any case. PCBC (which libfko
// lists but does not implement) and Asymmetric (GnuPG) are refused with
// an error saying so.
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if strings.EqualFold(s, name) {
			return Mode(m), nil
		}
	}
	switch {
	case strings.EqualFold(s, "PCBC"):
		return 0, fmt.Errorf("encryption mode PCBC: not supported (libfko does not implement it either)")
	case strings.EqualFold(s, "Asymmetric"):
		return 0, fmt.Errorf("encryption mode Asymmetric: GnuPG SPA is not supported")
	}
	return 0, fmt.Errorf("unknown encryption mode %q (want CBC, ECB, CFB, OFB, CTR or legacy)", s)
}

// HashType is one of fwknop's digest algorithms, used both for the HMAC
// (HMAC_DIGEST_TYPE, --hmac-digest-type) and for the digest inside the
// encrypted message (the client's -m). The zero value is SHA256, fwknop's
// default for both.
type HashType uint8

const (
	SHA256 HashType = iota
	MD5
	SHA1
	SHA384
	SHA512
	SHA3_256
	SHA3_512
)

var hashNames = [...]string{SHA256: "sha256", MD5: "md5", SHA1: "sha1", SHA384: "sha384", SHA512: "sha512", SHA3_256: "sha3_256", SHA3_512: "sha3_512"}

func (h HashType) String() string {
	if int(h) < len(hashNames) {
		return hashNames[h]
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

// ParseHashType accepts fwknop's names (md5, sha1, sha256, sha384,
// sha512, sha3_256, sha3_512) in any case.
func ParseHashType(s string) (HashType, error) {
	for h, name := range hashNames {
		if strings.EqualFold(s, name) {
			return HashType(h), nil
		}
	}
	return 0, fmt.Errorf("unknown digest type %q (want md5, sha1, sha256, sha384, sha512, sha3_256 or sha3_512)", s)
}

// New returns a new hash of this type.
func (h HashType) New() hash.Hash {
	switch h {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA384:
		return sha512.New384()
	case SHA512:
		return sha512.New()
	case SHA3_256:
		return sha3.New256()
	case SHA3_512:
		return sha3.New512()
	}
	return sha256.New()
}

// Size is the length of the raw digest in bytes.
func (h HashType) Size() int {
	switch h {
	case MD5:
		return md5.Size
	case SHA1:
		return sha1.Size
	case SHA384:
		return sha512.Size384
	case SHA512, SHA3_512:
		return sha512.Size
	}
	return sha256.Size
}

// B64Len is the length of the digest in unpadded base64, as fwknop writes
// it (22, 27, 43, 64 or 86 characters).
func (h HashType) B64Len() int { return (h.Size()*8 + 5) / 6 }

// MsgType is the SPA message type, the fifth plaintext field.
type MsgType uint8

const (
	CommandMsg                     MsgType = 0 // run a command on the server
	AccessMsg                      MsgType = 1 // open ports for an address
	NATAccessMsg                   MsgType = 2
	ClientTimeoutAccessMsg         MsgType = 3 // AccessMsg with the client's timeout
	ClientTimeoutNATAccessMsg      MsgType = 4
	LocalNATAccessMsg              MsgType = 5
	ClientTimeoutLocalNATAccessMsg MsgType = 6
)

var msgTypeNames = [...]string{
	"command", "access", "NAT access", "client timeout access",
	"client timeout NAT access", "local NAT access", "client timeout local NAT access",
}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// IsNAT reports whether the message asks for NAT access.
func (t MsgType) IsNAT() bool {
	switch t {
	case NATAccessMsg, ClientTimeoutNATAccessMsg, LocalNATAccessMsg, ClientTimeoutLocalNATAccessMsg:
		return true
	}
	return false
}

// HasTimeout reports whether the message carries the client's timeout.
func (t MsgType) HasTimeout() bool {
	switch t {
	case ClientTimeoutAccessMsg, ClientTimeoutNATAccessMsg, ClientTimeoutLocalNATAccessMsg:
		return true
	}
	return false
}
