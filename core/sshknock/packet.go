package sshknock

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/sshsig"
)

// The wire format (FORMAT.md is the specification; keep them in step).
const (
	// Magic opens every knock. Its first byte, NUL, is never the first
	// byte of an fwknop packet (base64 text), which is how the two share
	// SPA_Port.
	Magic = "\x00SESAMEK"
	// Version is the only packet version defined.
	Version = 1
	// Namespace is the SSHSIG namespace knocks are signed in.
	Namespace = "sesame-knock"
	// MaxPacket is the largest datagram a knock may be.
	MaxPacket = 1200
	// MaxPorts is the most ports one knock may ask for.
	MaxPorts = 32
	// NonceSize is the size of the random nonce.
	NonceSize = 16

	offVersion     = len(Magic)
	offFingerprint = offVersion + 1
	offTime        = offFingerprint + 32
	offNonce       = offTime + 8
	offAddrs       = offNonce + NonceSize
	// minPacket: the fixed fields, a server address, an allow byte, the
	// timeout, one port and two empty strings.
	minPacket = offAddrs + 1 + 4 + 1 + 4 + 1 + 3 + 4 + 4

	familySource = 0 // the allow address is the packet's source
	family4      = 4
	family6      = 6
)

// Fingerprint is the SHA-256 of a public key's wire encoding, the value
// `ssh-keygen -l` prints as SHA256:base64.
type Fingerprint [32]byte

// FingerprintOf returns pub's SHA-256 fingerprint.
func FingerprintOf(pub ssh.PublicKey) Fingerprint { return sha256.Sum256(pub.Marshal()) }

// String returns the fingerprint as OpenSSH prints it ("SHA256:" and
// unpadded base64).
func (f Fingerprint) String() string {
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(f[:])
}

// ParseFingerprint parses "SHA256:base64" (padding optional).
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	b64, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return f, fmt.Errorf("fingerprint %q: want SHA256:...", s)
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("fingerprint %q: not 32 bytes of base64", s)
	}
	copy(f[:], b)
	return f, nil
}

// IsPacket reports whether b starts with Magic: whether a datagram on the
// SPA port is meant for this package rather than for the fwknop decoder.
func IsPacket(b []byte) bool {
	return len(b) >= len(Magic) && string(b[:len(Magic)]) == Magic
}

// Packet is a decoded knock. Body, HashAlg and Signature point into the
// datagram it was decoded from.
type Packet struct {
	Fingerprint Fingerprint
	Time        time.Time // whole seconds
	Nonce       [NonceSize]byte
	Server      netip.Addr // the server address the knock is meant for
	Allow       netip.Addr // the address to open for; invalid: the packet's source
	Timeout     time.Duration
	ports       [MaxPorts]knock.Port
	nports      int

	Body      []byte // the signed bytes: everything before the hash algorithm
	HashAlg   []byte // "sha256" or "sha512"
	Signature []byte // the SSH signature in wire encoding
}

// Ports returns the requested ports, in packet order.
func (p *Packet) Ports() []knock.Port { return p.ports[:p.nports] }

// SetPorts sets the requested ports (at most MaxPorts).
func (p *Packet) SetPorts(ports []knock.Port) error {
	if len(ports) == 0 || len(ports) > MaxPorts {
		return fmt.Errorf("%d ports (want 1 to %d)", len(ports), MaxPorts)
	}
	p.nports = copy(p.ports[:], ports)
	return nil
}

// Digest is the replay digest: SHA-256 of the signed body. The signature
// is left out because some signatures (ECDSA) can be altered into other
// valid ones without the key.
func (p *Packet) Digest() [32]byte { return sha256.Sum256(p.Body) }

// fingerprintOf returns the fingerprint field of a datagram that is long
// enough and has the magic and version, without decoding the rest; ok is
// false otherwise. It does not allocate.
func fingerprintOf(b []byte) (f Fingerprint, ok bool) {
	if len(b) < minPacket || len(b) > MaxPacket || !IsPacket(b) || b[offVersion] != Version {
		return f, false
	}
	copy(f[:], b[offFingerprint:offTime])
	return f, true
}

// Decode parses a datagram. The outcomes are the packet, or an error
// wrapping ErrMalformed that says what is wrong. The signature is not
// checked (Verifier does that).
func Decode(b []byte) (Packet, error) {
	var p Packet
	if len(b) > MaxPacket {
		return p, fmt.Errorf("%w: %d bytes (max %d)", ErrMalformed, len(b), MaxPacket)
	}
	if !IsPacket(b) {
		return p, fmt.Errorf("%w: no magic", ErrMalformed)
	}
	if len(b) < minPacket {
		return p, fmt.Errorf("%w: %d bytes (min %d)", ErrMalformed, len(b), minPacket)
	}
	if v := b[offVersion]; v != Version {
		return p, fmt.Errorf("%w: version %d (want %d)", ErrMalformed, v, Version)
	}
	copy(p.Fingerprint[:], b[offFingerprint:offTime])
	ts := binary.BigEndian.Uint64(b[offTime:])
	if ts > maxUnix {
		return p, fmt.Errorf("%w: timestamp %d out of range", ErrMalformed, ts)
	}
	p.Time = time.Unix(int64(ts), 0)
	copy(p.Nonce[:], b[offNonce:offAddrs])
	r := b[offAddrs:]
	var err error
	var fam byte
	if p.Server, fam, r, err = readAddr(r); err != nil {
		return p, fmt.Errorf("%w: server address: %v", ErrMalformed, err)
	}
	if fam == familySource {
		return p, fmt.Errorf("%w: server address missing", ErrMalformed)
	}
	if p.Allow, _, r, err = readAddr(r); err != nil {
		return p, fmt.Errorf("%w: allow address: %v", ErrMalformed, err)
	}
	if len(r) < 5 {
		return p, fmt.Errorf("%w: truncated before the ports", ErrMalformed)
	}
	p.Timeout = time.Duration(binary.BigEndian.Uint32(r)) * time.Second
	n := int(r[4])
	r = r[5:]
	if n == 0 || n > MaxPorts {
		return p, fmt.Errorf("%w: %d ports (want 1 to %d)", ErrMalformed, n, MaxPorts)
	}
	if len(r) < 3*n {
		return p, fmt.Errorf("%w: truncated ports", ErrMalformed)
	}
	for i := 0; i < n; i++ {
		proto, num := knock.Proto(r[0]), binary.BigEndian.Uint16(r[1:])
		r = r[3:]
		if proto != knock.TCP && proto != knock.UDP {
			return p, fmt.Errorf("%w: port %d: protocol %d (want 6 or 17)", ErrMalformed, i+1, proto)
		}
		if num == 0 {
			return p, fmt.Errorf("%w: port %d is 0", ErrMalformed, i+1)
		}
		pt := knock.Port{Num: num, Proto: proto}
		for _, q := range p.ports[:i] {
			if q == pt {
				return p, fmt.Errorf("%w: port %s twice", ErrMalformed, pt)
			}
		}
		p.ports[i] = pt
	}
	p.nports = n
	p.Body = b[:len(b)-len(r)]
	var ok bool
	if p.HashAlg, r, ok = sshsig.ReadString(r); !ok {
		return p, fmt.Errorf("%w: truncated hash algorithm", ErrMalformed)
	}
	if a := string(p.HashAlg); a != sshsig.HashSHA256 && a != sshsig.HashSHA512 {
		return p, fmt.Errorf("%w: hash algorithm %q", ErrMalformed, p.HashAlg)
	}
	if p.Signature, r, ok = sshsig.ReadString(r); !ok {
		return p, fmt.Errorf("%w: truncated signature", ErrMalformed)
	}
	if len(r) != 0 {
		return p, fmt.Errorf("%w: %d bytes after the signature", ErrMalformed, len(r))
	}
	return p, nil
}

// readAddr reads a family byte and its address.
func readAddr(r []byte) (netip.Addr, byte, []byte, error) {
	if len(r) < 1 {
		return netip.Addr{}, 0, r, fmt.Errorf("truncated")
	}
	fam := r[0]
	r = r[1:]
	switch fam {
	case familySource:
		return netip.Addr{}, fam, r, nil
	case family4:
		if len(r) < 4 {
			return netip.Addr{}, fam, r, fmt.Errorf("truncated")
		}
		return netip.AddrFrom4([4]byte(r[:4])), fam, r[4:], nil
	case family6:
		if len(r) < 16 {
			return netip.Addr{}, fam, r, fmt.Errorf("truncated")
		}
		a := netip.AddrFrom16([16]byte(r[:16]))
		if a.Is4In6() {
			return netip.Addr{}, fam, r, fmt.Errorf("IPv4-mapped %s (use family 4)", a)
		}
		return a, fam, r[16:], nil
	}
	return netip.Addr{}, fam, r, fmt.Errorf("family %d (want 0, 4 or 6)", fam)
}

// appendBody encodes the signed part of p.
func appendBody(b []byte, p *Packet) ([]byte, error) {
	if !p.Server.IsValid() {
		return nil, fmt.Errorf("no server address")
	}
	if p.Timeout < 0 || p.Timeout%time.Second != 0 || p.Timeout/time.Second > math.MaxUint32 {
		return nil, fmt.Errorf("timeout %v: want whole seconds from 0 to %d", p.Timeout, uint32(math.MaxUint32))
	}
	if p.nports == 0 {
		return nil, fmt.Errorf("no ports")
	}
	if p.Time.Unix() < 0 {
		return nil, fmt.Errorf("time %v before 1970", p.Time)
	}
	b = append(b, Magic...)
	b = append(b, Version)
	b = append(b, p.Fingerprint[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Time.Unix()))
	b = append(b, p.Nonce[:]...)
	b = appendAddr(b, p.Server)
	b = appendAddr(b, p.Allow)
	b = binary.BigEndian.AppendUint32(b, uint32(p.Timeout/time.Second))
	b = append(b, byte(p.nports))
	for i, pt := range p.Ports() {
		if (pt.Proto != knock.TCP && pt.Proto != knock.UDP) || pt.Num == 0 {
			return nil, fmt.Errorf("port %s: want tcp or udp and 1-65535", pt)
		}
		for _, q := range p.ports[:i] {
			if q == pt {
				return nil, fmt.Errorf("port %s twice", pt)
			}
		}
		b = append(b, byte(pt.Proto))
		b = binary.BigEndian.AppendUint16(b, pt.Num)
	}
	return b, nil
}

func appendAddr(b []byte, a netip.Addr) []byte {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return append(b, familySource)
	case a.Is4():
		s := a.As4()
		return append(append(b, family4), s[:]...)
	default:
		s := a.As16()
		return append(append(b, family6), s[:]...)
	}
}
