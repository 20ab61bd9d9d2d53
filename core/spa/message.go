package spa

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sesame-knock/sesame/core/knock"
)

// Field limits from libfko's fko_limits.h.
const (
	RandomLen        = 16  // FKO_RAND_VAL_SIZE: decimal digits
	MaxUserB64       = 64  // MAX_SPA_USERNAME_SIZE, of the base64 field
	MaxTimestampLen  = 12  // MAX_SPA_TIMESTAMP_SIZE
	MaxVersionLen    = 8   // MAX_SPA_VERSION_SIZE
	MaxMessageB64    = 256 // MAX_SPA_MESSAGE_SIZE, of a base64 field
	MaxClientTimeout = 2 << 15
	minPlainLen      = 36   // MIN_SPA_ENCODED_MSG_SIZE
	maxPlainLen      = 1500 // MAX_SPA_ENCODED_MSG_SIZE
	minEncryptedLen  = 36
	// Version is the protocol version fwknop 2.6 writes.
	Version = "3.0.0"
)

// Message is a decoded SPA message: libfko's fields in wire order.
type Message struct {
	Random    string // 16 decimal digits
	User      string // the client's user name, as claimed
	Timestamp int64  // Unix seconds, the client's clock plus any offset
	Version   string // "3.0.0"
	Type      MsgType
	// Access is the request: "ADDR,PROTO/PORT[,PROTO/PORT...]" for access
	// messages ("ADDR,COMMAND" for a command), ADDR being 0.0.0.0 when the
	// client asks for its packet's source (-s). ParseAccess reads it.
	Access        string
	NATAccess     string // "HOST,PORT" for NAT types
	ServerAuth    string // rarely used; carried but not interpreted
	ClientTimeout int    // seconds, for the client-timeout types; 0 otherwise
	// Digest is the algorithm of the digest that ends the plaintext.
	Digest HashType
}

// encodeFields returns the plaintext before its digest, as
// fko_encode_spa_data builds it. A client timeout turns an access message
// into a client-timeout one (and back), as fko_set_spa_client_timeout does.
func (m *Message) encodeFields() (string, error) {
	t := m.Type
	if m.ClientTimeout < 0 || m.ClientTimeout > MaxClientTimeout {
		return "", fmt.Errorf("client timeout %d: want 0-%d", m.ClientTimeout, MaxClientTimeout)
	}
	switch {
	case m.ClientTimeout > 0 && t == AccessMsg:
		t = ClientTimeoutAccessMsg
	case m.ClientTimeout > 0 && t == NATAccessMsg:
		t = ClientTimeoutNATAccessMsg
	case m.ClientTimeout > 0 && t == LocalNATAccessMsg:
		t = ClientTimeoutLocalNATAccessMsg
	case m.ClientTimeout == 0 && t == ClientTimeoutAccessMsg:
		t = AccessMsg
	case m.ClientTimeout == 0 && t == ClientTimeoutNATAccessMsg:
		t = NATAccessMsg
	case m.ClientTimeout == 0 && t == ClientTimeoutLocalNATAccessMsg:
		t = LocalNATAccessMsg
	}
	if int(t) >= len(msgTypeNames) {
		return "", fmt.Errorf("message type %d: want 0-%d", t, len(msgTypeNames)-1)
	}
	if len(m.Random) != RandomLen || !allDigits(m.Random) {
		return "", fmt.Errorf("random value %q: want %d digits", m.Random, RandomLen)
	}
	if err := validUser(m.User); err != nil {
		return "", err
	}
	if m.Timestamp < 0 {
		return "", fmt.Errorf("negative timestamp %d", m.Timestamp)
	}
	if m.Version == "" || len(m.Version) > MaxVersionLen || strings.ContainsAny(m.Version, ":") {
		return "", fmt.Errorf("version %q: want 1-%d characters without ':'", m.Version, MaxVersionLen)
	}
	if t == CommandMsg {
		if err := validCommand(m.Access); err != nil {
			return "", err
		}
	} else if _, err := ParseAccess(m.Access); err != nil {
		return "", err
	}
	if t.IsNAT() != (m.NATAccess != "") {
		return "", fmt.Errorf("NAT access %q does not fit message type %s", m.NATAccess, t)
	}
	var b strings.Builder
	b.WriteString(m.Random)
	b.WriteByte(':')
	b.WriteString(b64(m.User))
	fmt.Fprintf(&b, ":%d:%s:%d:", m.Timestamp, m.Version, t)
	b.WriteString(b64(m.Access))
	if m.NATAccess != "" {
		b.WriteByte(':')
		b.WriteString(b64(m.NATAccess))
	}
	if m.ServerAuth != "" {
		b.WriteByte(':')
		b.WriteString(b64(m.ServerAuth))
	}
	if m.ClientTimeout > 0 && t != CommandMsg {
		fmt.Fprintf(&b, ":%d", m.ClientTimeout)
	}
	for _, f := range []struct {
		name string
		s    string
	}{{"user", b64(m.User)}, {"message", b64(m.Access)}, {"NAT access", b64(m.NATAccess)}, {"server auth", b64(m.ServerAuth)}} {
		if len(f.s) > MaxMessageB64 || (f.name == "user" && len(f.s) > MaxUserB64) {
			return "", fmt.Errorf("%s too long", f.name)
		}
	}
	if b.Len() < minPlainLen || b.Len() > maxPlainLen {
		return "", fmt.Errorf("encoded message of %d bytes: want %d-%d", b.Len(), minPlainLen, maxPlainLen)
	}
	return b.String(), nil
}

func b64(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }

// digestB64 is fwknop's digest of the fields: the hash in unpadded base64.
func digestB64(typ HashType, fields []byte) []byte {
	h := typ.New()
	h.Write(fields)
	sum := h.Sum(nil)
	out := make([]byte, base64.RawStdEncoding.EncodedLen(len(sum)))
	base64.RawStdEncoding.Encode(out, sum)
	return out
}

// digestTypeFor maps a digest's base64 length to its type, as libfko's
// is_valid_digest_len does; 43 and 86 may also be SHA3 (tried second).
func digestTypeFor(n int) (HashType, bool) {
	for _, t := range []HashType{MD5, SHA1, SHA256, SHA384, SHA512} {
		if t.B64Len() == n {
			return t, true
		}
	}
	return 0, false
}

// parsePlaintext decodes a decrypted plaintext (padding removed) in
// fko_decode_spa_data's order: the digest first, then each field.
func parsePlaintext(p []byte) (*Message, error) {
	// _rijndael_decrypt's check that the key was right: 16 digits and ':'.
	if len(p) <= RandomLen || !allDigits(string(p[:RandomLen])) || p[RandomLen] != ':' {
		return nil, ErrUndecryptable
	}
	if len(p) < minPlainLen || len(p) > maxPlainLen {
		return nil, fmt.Errorf("%w: plaintext of %d bytes", ErrMalformed, len(p))
	}
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("%w: non-printable byte %#x", ErrMalformed, c)
		}
	}
	i := bytes.LastIndexByte(p, ':')
	fields, digest := p[:i], p[i+1:]
	typ, ok := digestTypeFor(len(digest))
	if !ok {
		return nil, fmt.Errorf("%w: digest of %d characters", ErrMalformed, len(digest))
	}
	if subtle.ConstantTimeCompare(digestB64(typ, fields), digest) != 1 {
		alt := typ
		switch typ {
		case SHA256:
			alt = SHA3_256
		case SHA512:
			alt = SHA3_512
		}
		if alt == typ || subtle.ConstantTimeCompare(digestB64(alt, fields), digest) != 1 {
			return nil, ErrDigest
		}
		typ = alt
	}
	m := &Message{Digest: typ}
	if err := m.parseFields(strings.Split(string(fields), ":")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

func (m *Message) parseFields(f []string) error {
	if len(f) < 6 {
		return fmt.Errorf("%d fields, want at least 6", len(f))
	}
	m.Random = f[0][:RandomLen] // libfko keeps the first 16 of a longer field
	var err error
	if len(f[1]) == 0 || len(f[1]) > MaxUserB64 {
		return fmt.Errorf("user field of %d characters", len(f[1]))
	}
	if m.User, err = unb64(f[1]); err != nil {
		return fmt.Errorf("user: %v", err)
	}
	if err := validUser(m.User); err != nil {
		return err
	}
	if len(f[2]) == 0 || len(f[2]) > MaxTimestampLen || !allDigits(f[2]) {
		return fmt.Errorf("timestamp %q", f[2])
	}
	if m.Timestamp, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return fmt.Errorf("timestamp %q", f[2])
	}
	if len(f[3]) == 0 || len(f[3]) > MaxVersionLen {
		return fmt.Errorf("version %q", f[3])
	}
	m.Version = f[3]
	if len(f[4]) == 0 || len(f[4]) > 2 || !allDigits(f[4]) {
		return fmt.Errorf("message type %q", f[4])
	}
	t, _ := strconv.Atoi(f[4])
	if t >= len(msgTypeNames) {
		return fmt.Errorf("message type %d", t)
	}
	m.Type = MsgType(t)
	// Fields after the message: NAT access, then server auth, then the
	// timeout; only server auth is optional.
	rest := f[6:]
	want := 0
	if m.Type.IsNAT() {
		want++
	}
	if m.Type.HasTimeout() {
		want++
	}
	if len(rest) != want && len(rest) != want+1 {
		return fmt.Errorf("%d fields for a %s message", len(f), m.Type)
	}
	if m.Access, err = unb64Field("message", f[5]); err != nil {
		return err
	}
	if m.Type == CommandMsg {
		if err := validCommand(m.Access); err != nil {
			return err
		}
	} else if _, err := ParseAccess(m.Access); err != nil {
		return err
	}
	if m.Type.IsNAT() {
		if m.NATAccess, err = unb64Field("NAT access", rest[0]); err != nil {
			return err
		}
		if err := validNAT(m.NATAccess); err != nil {
			return err
		}
		rest = rest[1:]
	}
	if len(rest) > 0 && (len(rest) == 2 || !m.Type.HasTimeout()) {
		if m.ServerAuth, err = unb64Field("server auth", rest[0]); err != nil {
			return err
		}
		rest = rest[1:]
	}
	if m.Type.HasTimeout() {
		s := rest[0]
		if len(s) == 0 || len(s) > MaxMessageB64 || !allDigits(s) {
			return fmt.Errorf("client timeout %q", s)
		}
		n, err := strconv.Atoi(s)
		if err != nil || n > MaxClientTimeout {
			return fmt.Errorf("client timeout %q: want 0-%d", s, MaxClientTimeout)
		}
		m.ClientTimeout = n
	}
	return nil
}

func unb64Field(name, s string) (string, error) {
	if len(s) == 0 || len(s) > MaxMessageB64 {
		return "", fmt.Errorf("%s field of %d characters", name, len(s))
	}
	v, err := unb64(s)
	if err != nil {
		return "", fmt.Errorf("%s: %v", name, err)
	}
	return v, nil
}

// unb64 decodes unpadded base64 as libfko writes it (padding, if any, is
// accepted too).
func unb64(s string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return "", fmt.Errorf("bad base64")
	}
	return string(b), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// validUser is libfko's validate_username: printable ASCII except
// " / \ [ ] : ; | = , + * ? < >.
func validUser(u string) error {
	if u == "" || len(u) > MaxUserB64 {
		return fmt.Errorf("user name %q: want 1-%d characters", u, MaxUserB64)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c < 0x20 || c > 0x7e || strings.IndexByte(`"/\[]:;|=,+*?<>`, c) >= 0 {
			return fmt.Errorf("user name %q: character %q not allowed", u, c)
		}
	}
	return nil
}

// Request is an access message parsed: the address to open for and the
// ports.
type Request struct {
	// Addr is the address to allow; unspecified (0.0.0.0 or ::) when the
	// client asked for its packet's source address (fwknop -s).
	Addr  netip.Addr
	Ports []knock.Port
	// Other lists the PROTO/PORT entries for protocols other than tcp and
	// udp (icmp, none), which fwknop's message format allows but no
	// server grants.
	Other []string
}

// ParseAccess parses an access message "ADDR,PROTO/PORT[,...]". ADDR is an
// IPv4 address as fwknop writes it, or (a Sesame extension) an IPv6
// address; PROTO is tcp, udp, icmp or none, PORT 1-65535.
func ParseAccess(s string) (Request, error) {
	var r Request
	if len(s) >= MaxMessageB64 {
		return r, fmt.Errorf("access message too long")
	}
	addr, list, ok := strings.Cut(s, ",")
	if !ok || list == "" {
		return r, fmt.Errorf("access message %q: want ADDR,PROTO/PORT", s)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return r, fmt.Errorf("access message %q: bad address %q", s, addr)
	}
	r.Addr = a.Unmap()
	for _, e := range strings.Split(list, ",") {
		proto, port, ok := strings.Cut(e, "/")
		if !ok || len(port) == 0 || len(port) > 5 || !allDigits(port) {
			return r, fmt.Errorf("access message %q: bad entry %q", s, e)
		}
		n, _ := strconv.Atoi(port)
		if n < 1 || n > 65535 {
			return r, fmt.Errorf("access message %q: port %s out of range", s, port)
		}
		switch proto {
		case "tcp":
			r.Ports = append(r.Ports, knock.Port{Num: uint16(n), Proto: knock.TCP})
		case "udp":
			r.Ports = append(r.Ports, knock.Port{Num: uint16(n), Proto: knock.UDP})
		case "icmp", "none":
			r.Other = append(r.Other, e)
		default:
			return r, fmt.Errorf("access message %q: bad protocol %q", s, proto)
		}
	}
	return r, nil
}

// validCommand is libfko's validate_cmd_msg: an address, a comma and
// something after it.
func validCommand(s string) error {
	addr, cmd, ok := strings.Cut(s, ",")
	if !ok || cmd == "" {
		return fmt.Errorf("command message %q: want ADDR,COMMAND", s)
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("command message %q: bad address", s)
	}
	return nil
}

// validNAT is libfko's validate_nat_access_msg: "HOST,PORT".
func validNAT(s string) error {
	host, port, ok := strings.Cut(s, ",")
	if !ok || host == "" || len(host) > 70 || strings.ContainsAny(host, " /?\"'\\,") ||
		len(port) == 0 || len(port) > 5 || !allDigits(port) {
		return fmt.Errorf("NAT access %q: want HOST,PORT", s)
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		return fmt.Errorf("NAT access %q: port out of range", s)
	}
	return nil
}
