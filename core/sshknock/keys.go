package sshknock

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
)

const (
	// DefaultTimeout is a key's grant length without timeout=.
	DefaultTimeout = 30 * time.Second
	// MaxTimeout is the longest timeout= accepted.
	MaxTimeout = 24 * time.Hour
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 3072
)

// Key is one line of an authorized_keys file.
type Key struct {
	Public         ssh.PublicKey
	Fingerprint    Fingerprint
	Comment        string        // who: shown in grants and logs
	Open           []knock.Port  // open="...": what the key may open
	Timeout        time.Duration // timeout="...": the grant's length and the most a packet may ask
	From           []AddrMatch   // from="...": where knocks may come from and open for; empty: anywhere
	Expiry         time.Time     // expiry-time="...": refused after this; zero: never
	VerifyRequired bool          // verify-required: FIDO signatures must carry user verification
	File           string
	Line           int
}

// AddrMatch is one entry of a from= list: a prefix, possibly negated.
type AddrMatch struct {
	Prefix netip.Prefix
	Negate bool
}

// Keys is a parsed authorized_keys file. It is not modified after
// ParseKeys returns, so any number of goroutines may read it.
type Keys struct {
	File string
	List []*Key // in file order
	byFP map[Fingerprint]*Key
}

// Lookup returns the key with fingerprint f, or nil. It does not allocate.
func (ks *Keys) Lookup(f Fingerprint) *Key {
	if ks == nil {
		return nil
	}
	return ks.byFP[f]
}

// Removed returns the keys of old that are not in ks (by fingerprint):
// the keys whose grants a reload must revoke.
func (ks *Keys) Removed(old *Keys) []*Key {
	if old == nil {
		return nil
	}
	var gone []*Key
	for _, k := range old.List {
		if ks.Lookup(k.Fingerprint) == nil {
			gone = append(gone, k)
		}
	}
	return gone
}

// AllowsPort reports whether open= lists p.
func (k *Key) AllowsPort(p knock.Port) bool {
	for _, o := range k.Open {
		if o == p {
			return true
		}
	}
	return false
}

// AllowsAddr reports whether from= admits a, as OpenSSH matches from=:
// a negated entry that matches refuses, else any positive match admits.
// An empty from= admits every address.
func (k *Key) AllowsAddr(a netip.Addr) bool {
	if len(k.From) == 0 {
		return true
	}
	a = a.Unmap().WithZone("")
	ok := false
	for _, m := range k.From {
		if m.Prefix.Contains(a) {
			if m.Negate {
				return false
			}
			ok = true
		}
	}
	return ok
}

// Expired reports whether expiry-time has passed at now (OpenSSH's
// check: expired once now is after the expiry second).
func (k *Key) Expired(now time.Time) bool {
	return !k.Expiry.IsZero() && now.Unix() > k.Expiry.Unix()
}

// IsFIDO reports whether the key lives on a hardware token.
func (k *Key) IsFIDO() bool {
	t := k.Public.Type()
	return t == ssh.KeyAlgoSKED25519 || t == ssh.KeyAlgoSKECDSA256
}

// LoadKeys reads and parses an authorized_keys file (ParseKeys).
func LoadKeys(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sshknock.LoadKeys: %w", err)
	}
	return ParseKeys(path, b)
}

// ParseKeys parses an authorized_keys file in OpenSSH's syntax, one key
// per line, with Sesame's options: open="tcp/22,udp/53" (required),
// timeout="30", from="CIDR,...", expiry-time="YYYYMMDD[HHMM[SS]][Z]" (local
// time unless Z or UTC), verify-required (FIDO keys only). Every problem is
// reported, each a *LineError ("file:line: ...", errors joined); a file
// with any problem yields no Keys. Comments (#) and blank lines are skipped.
func ParseKeys(file string, data []byte) (*Keys, error) {
	return parseKeys(file, data, time.Local)
}

func parseKeys(file string, data []byte, loc *time.Location) (*Keys, error) {
	ks := &Keys{File: file, byFP: make(map[Fingerprint]*Key)}
	var errs []error
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		k, err := parseLine(string(bytes.TrimSuffix(line, []byte("\r"))), loc)
		if err != nil {
			errs = append(errs, &LineError{File: file, Line: n, Err: err})
			continue
		}
		if k == nil {
			continue
		}
		k.File, k.Line = file, n
		if prev := ks.byFP[k.Fingerprint]; prev != nil {
			errs = append(errs, &LineError{File: file, Line: n, Err: fmt.Errorf("key %s is already listed at line %d", k.Fingerprint, prev.Line)})
			continue
		}
		ks.byFP[k.Fingerprint] = k
		ks.List = append(ks.List, k)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ks, nil
}

// keyTypes are the public key type names an authorized_keys line may
// start with (those this package accepts and those it refuses by name).
var keyTypes = map[string]bool{
	ssh.KeyAlgoED25519: true, ssh.KeyAlgoECDSA256: true, ssh.KeyAlgoECDSA384: true,
	ssh.KeyAlgoECDSA521: true, ssh.KeyAlgoRSA: true, ssh.KeyAlgoSKED25519: true,
	ssh.KeyAlgoSKECDSA256: true, ssh.KeyAlgoDSA: false,
}

// parseLine parses one line; nil, nil for blank lines and comments.
func parseLine(line string, loc *time.Location) (*Key, error) {
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return nil, nil
	}
	first, rest, err := splitOptions(line)
	if err != nil {
		return nil, err
	}
	var opts string
	if _, isType := keyTypes[first]; !isType && !strings.Contains(first, "-cert-v01@openssh.com") {
		if looksLikeKeyType(first) {
			return nil, fmt.Errorf("unsupported key type %q", first)
		}
		opts = first
		first, rest = nextField(rest)
	}
	typ := first
	b64, rest := nextField(rest)
	comment := strings.TrimSpace(rest)
	if typ == "" || b64 == "" {
		return nil, fmt.Errorf("want [options] type base64-key [comment]")
	}
	switch {
	case strings.Contains(typ, "-cert-v01@openssh.com"):
		return nil, fmt.Errorf("certificates (%s) are not supported: list the key itself", typ)
	case typ == ssh.KeyAlgoDSA:
		return nil, fmt.Errorf("weak key: DSA (ssh-dss) keys are refused")
	case !keyTypes[typ]:
		return nil, fmt.Errorf("unsupported key type %q", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%s key: bad base64: %v", typ, err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("%s key: %v", typ, err)
	}
	if pub.Type() != typ {
		return nil, fmt.Errorf("key says %s but its data is %s", typ, pub.Type())
	}
	if typ == ssh.KeyAlgoRSA {
		bits := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey).N.BitLen()
		if bits < MinRSABits {
			return nil, fmt.Errorf("weak key: RSA %d bits (want at least %d)", bits, MinRSABits)
		}
	}
	k := &Key{Public: pub, Fingerprint: FingerprintOf(pub), Comment: comment, Timeout: DefaultTimeout}
	if err := parseOptions(k, opts, loc); err != nil {
		return nil, err
	}
	if k.Open == nil {
		return nil, fmt.Errorf(`missing open="..." (what this key may open, e.g. open="tcp/22")`)
	}
	if k.VerifyRequired && !k.IsFIDO() {
		return nil, fmt.Errorf("verify-required applies to FIDO keys (sk-...) only, not %s", typ)
	}
	return k, nil
}

// nextField skips spaces and tabs and returns the field up to the next
// one, and what follows it.
func nextField(s string) (string, string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// looksLikeKeyType tells a misspelled or unsupported key type from an
// options field (which has '=' or is a known flag).
func looksLikeKeyType(s string) bool {
	if strings.ContainsAny(s, `=",`) {
		return false
	}
	for _, p := range []string{"ssh-", "ecdsa-", "sk-", "rsa-", "webauthn-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// splitOptions returns the first field, which may be a quoted options
// string, and the rest, as OpenSSH's sshkey_advance_past_options splits
// them: spaces and tabs inside double quotes do not end it, \" is a quote
// inside quotes.
func splitOptions(line string) (string, string, error) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && line[i+1] == '"':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || c == '\t'):
			return line[:i], line[i+1:], nil
		}
	}
	if quoted {
		return "", "", fmt.Errorf("unterminated quote in options")
	}
	return line, "", nil
}

// parseOptions parses OpenSSH's option syntax: comma-separated names,
// some with ="quoted value"; names are case-insensitive.
func parseOptions(k *Key, s string, loc *time.Location) error {
	seen := map[string]bool{}
	for s != "" {
		i := 0
		for i < len(s) && s[i] != '=' && s[i] != ',' {
			i++
		}
		name := strings.ToLower(s[:i])
		s = s[i:]
		var val string
		hasVal := strings.HasPrefix(s, "=")
		if hasVal {
			var err error
			if val, s, err = dequote(s[1:]); err != nil {
				return fmt.Errorf("option %s: %w", name, err)
			}
		}
		if name == "" {
			return fmt.Errorf("empty option")
		}
		if seen[name] && name != "expiry-time" {
			return fmt.Errorf("option %s given twice", name)
		}
		seen[name] = true
		flag := name == "verify-required" || name == "no-verify-required"
		if flag && hasVal {
			return fmt.Errorf("option %s takes no value", name)
		}
		if !flag && !hasVal && knownValueOption(name) {
			return fmt.Errorf(`option %s needs a value: %s="..."`, name, name)
		}
		var err error
		switch name {
		case "open":
			k.Open, err = parseOpen(val)
		case "timeout":
			k.Timeout, err = parseTimeout(val)
		case "from":
			k.From, err = parseFrom(val)
		case "expiry-time":
			var t time.Time
			if t, err = parseExpiry(val, loc); err == nil && (k.Expiry.IsZero() || t.Before(k.Expiry)) {
				k.Expiry = t // as OpenSSH: the earliest of several wins
			}
		case "verify-required":
			k.VerifyRequired = true
		case "no-verify-required":
			k.VerifyRequired = false
		default:
			return fmt.Errorf("unknown option %q (Sesame knows open, timeout, from, expiry-time, verify-required)", name)
		}
		if err != nil {
			return fmt.Errorf("option %s: %w", name, err)
		}
		switch {
		case s == "":
		case s[0] != ',':
			return fmt.Errorf("option %s: unexpected %q after it", name, s)
		case len(s) == 1:
			return fmt.Errorf("unexpected end of options after ','")
		default:
			s = s[1:]
		}
	}
	return nil
}

func knownValueOption(name string) bool {
	switch name {
	case "open", "timeout", "from", "expiry-time":
		return true
	}
	return false
}

// dequote reads a "quoted value" (OpenSSH's opt_dequote: \" is a quote)
// and returns it and what follows.
func dequote(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, fmt.Errorf("missing start quote")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case s[i] == '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", s, fmt.Errorf("missing end quote")
}

// ParseAccess parses a list like fwknop's OPEN_PORTS and the client's
// -A: "tcp/22,udp/53", spaces allowed around elements. The protocol is
// required.
func ParseAccess(s string) ([]knock.Port, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty port list")
	}
	var out []knock.Port
	for i, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		proto, num, ok := strings.Cut(e, "/")
		if !ok {
			return nil, fmt.Errorf("element %d %q: want PROTO/PORT, e.g. tcp/22", i+1, e)
		}
		p, err := knock.ParseProto(strings.TrimSpace(proto))
		if err != nil {
			return nil, fmt.Errorf("element %d %q: %v", i+1, e, err)
		}
		n, err := knock.ParsePortNum(strings.TrimSpace(num))
		if err != nil {
			return nil, fmt.Errorf("element %d %q: %v", i+1, e, err)
		}
		pt := knock.Port{Num: n, Proto: p}
		for _, q := range out {
			if q == pt {
				return nil, fmt.Errorf("element %d: %s/%d listed twice", i+1, p, n)
			}
		}
		out = append(out, pt)
	}
	return out, nil
}

// FormatAccess prints ports as ParseAccess reads them.
func FormatAccess(ps []knock.Port) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s/%d", p.Proto, p.Num)
	}
	return b.String()
}

func parseOpen(s string) ([]knock.Port, error) {
	ps, err := ParseAccess(s)
	if err != nil {
		return nil, err
	}
	if len(ps) > MaxPorts {
		return nil, fmt.Errorf("%d ports (at most %d)", len(ps), MaxPorts)
	}
	return ps, nil
}

func parseTimeout(s string) (time.Duration, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 || time.Duration(n)*time.Second > MaxTimeout {
		return 0, fmt.Errorf("%q: want whole seconds from 1 to %d", s, int(MaxTimeout/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

// parseFrom parses a comma-separated list of addresses and CIDR
// prefixes, each possibly negated with '!'. Host names and wildcards,
// which OpenSSH also accepts, are refused: a knock is matched before any
// name could be looked up.
func parseFrom(s string) ([]AddrMatch, error) {
	var out []AddrMatch
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		m := AddrMatch{}
		if rest, ok := strings.CutPrefix(e, "!"); ok {
			m.Negate, e = true, rest
		}
		if e == "" {
			return nil, fmt.Errorf("%q: empty element", s)
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", e, err)
			}
			if p.Addr().Is4In6() {
				return nil, fmt.Errorf("%q: write IPv4 prefixes in IPv4 form", e)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", e, p.Masked())
			}
			m.Prefix = p
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q: want an address or CIDR prefix (host names and wildcards are not supported)", e)
			}
			a = a.Unmap()
			m.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, m)
	}
	return out, nil
}

// parseExpiry parses OpenSSH's expiry-time: YYYYMMDD, YYYYMMDDHHMM or
// YYYYMMDDHHMMSS, in loc unless it ends in Z or UTC.
func parseExpiry(s string, loc *time.Location) (time.Time, error) {
	v := s
	switch {
	case len(v) > 1 && strings.EqualFold(v[len(v)-1:], "Z"):
		v, loc = v[:len(v)-1], time.UTC
	case len(v) > 3 && strings.EqualFold(v[len(v)-3:], "UTC"):
		v, loc = v[:len(v)-3], time.UTC
	}
	var layout string
	switch len(v) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("%q: want YYYYMMDD[HHMM[SS]][Z]", s)
	}
	t, err := time.ParseInLocation(layout, v, loc)
	if err != nil || t.Unix() <= 0 {
		return time.Time{}, fmt.Errorf("%q: not a valid date and time", s)
	}
	return t, nil
}
