package access

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
)

// Config is a parsed access.conf.
type Config struct {
	Stanzas []*Stanza
	// Warnings are "file:line: text" notes on what works but deserves a
	// look (what fwknopd also only warns about).
	Warnings []string
}

// Error is a problem at a line of an access file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxIncludeDepth is fwknopd's MAX_DEPTH for %include nesting.
const maxIncludeDepth = 3

// maxErrors bounds how many problems one parse reports.
const maxErrors = 50

// Load reads path: an access.conf file, or a directory whose *.conf files
// are read in name order (fwknopd's --access-folder). The error, when
// not nil, joins one *Error per problem found.
func Load(path string) (*Config, error) {
	p := newParser()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("access.Load: %w", err)
	}
	if fi.IsDir() {
		p.folder(path, path, 0, 0)
	} else {
		p.file(path, path, 0, 0)
	}
	return p.finish(path)
}

// Parse reads one access.conf held in text, as if read from the file
// name (which errors carry; %include paths are relative to its
// directory).
func Parse(name string, text []byte) (*Config, error) {
	p := newParser()
	p.text(name, text, 0)
	return p.finish(name)
}

type parser struct {
	cfg  Config
	errs []error
	loc  *time.Location // ACCESS_EXPIRE dates are local, as fwknopd's mktime
}

func newParser() *parser { return &parser{loc: time.Local} }

func (p *parser) errorf(file string, line int, format string, args ...any) {
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *parser) finish(name string) (*Config, error) {
	if len(p.errs) == 0 && len(p.cfg.Stanzas) == 0 {
		p.errs = append(p.errs, fmt.Errorf("%s: no SOURCE stanza", name))
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &p.cfg, nil
}

// folder reads dir's *.conf files in name order.
func (p *parser) folder(dir, from string, line, depth int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		p.errorf(from, line, "access folder: %v", err)
		return
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p.file(filepath.Join(dir, n), from, line, depth)
	}
}

func (p *parser) file(path, from string, line, depth int) {
	text, err := os.ReadFile(path)
	if err != nil {
		p.errorf(from, line, "%v", err)
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: mode %04o: it holds keys, make it 0600 (fwknopd warns too)", path, fi.Mode().Perm()))
	}
	p.text(path, text, depth)
}

// line is one "VAR VALUE" line.
type line struct {
	file string
	n    int
	key  string
	raw  string // the value up to ';' or the end of the line, untrimmed
	val  string // raw without trailing blanks
}

// lines splits an access file as fwknopd's sscanf("%s %[^;\n\r]") does:
// a name, blanks, and a value that ends at ';' or the end of the line.
// Lines starting with '#' or ';' and blank lines are skipped.
func (p *parser) lines(name string, text []byte) []line {
	var out []line
	for i, l := range bytes.Split(text, []byte("\n")) {
		s := strings.TrimRight(string(l), "\r")
		t := strings.TrimLeft(s, " \t")
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		key, rest := t, ""
		if j := strings.IndexAny(t, " \t"); j >= 0 {
			key, rest = t[:j], strings.TrimLeft(t[j:], " \t")
		}
		if j := strings.IndexByte(rest, ';'); j >= 0 {
			rest = rest[:j]
		}
		key = strings.TrimSuffix(key, ":")
		l := line{file: name, n: i + 1, key: key, raw: rest, val: strings.TrimRight(rest, " \t")}
		if l.val == "" {
			p.errorf(name, l.n, "%s: missing value", key)
			continue
		}
		out = append(out, l)
	}
	return out
}

// text parses one file's lines. Stanzas are per file, as in fwknopd: the
// lines after an %include continue the including file's stanza.
func (p *parser) text(name string, text []byte, depth int) {
	var cur *building
	end := func() {
		if cur != nil {
			p.finishStanza(cur)
			cur = nil
		}
	}
	for _, l := range p.lines(name, text) {
		switch l.key {
		case "%include", "%include_folder":
			if depth >= maxIncludeDepth {
				p.errorf(name, l.n, "%s: more than %d levels of includes", l.key, maxIncludeDepth)
				continue
			}
			path := resolve(name, l.val)
			if l.key == "%include" {
				p.file(path, name, l.n, depth+1)
			} else {
				p.folder(path, name, l.n, depth+1)
			}
			continue
		case "SOURCE":
			end()
			st := &Stanza{Num: len(p.cfg.Stanzas) + 1, File: name, Line: l.n}
			p.cfg.Stanzas = append(p.cfg.Stanzas, st)
			cur = &building{st: st}
			if st.Source = p.addrs(l); st.Source == nil {
				cur.bad = true
			}
			continue
		}
		if cur == nil {
			p.errorf(name, l.n, "%s before the first SOURCE line", l.key)
			continue
		}
		if l.key == "%include_keys" {
			p.includeKeys(cur, l)
			continue
		}
		p.set(cur, l, false)
	}
	end()
}

func resolve(from, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(from), path)
}

// building is a stanza being read, with what finishStanza checks.
type building struct {
	st        *Stanza
	key, hmac line // the lines that set them (zero: unset)
	hmacType  bool
	bad       bool // an error was reported; skip the stanza checks
}

// includeKeys reads fwknopd's %include_keys file: only key lines.
func (p *parser) includeKeys(b *building, at line) {
	path := resolve(at.file, at.val)
	text, err := os.ReadFile(path)
	if err != nil {
		p.errorf(at.file, at.n, "%%include_keys: %v", err)
		b.bad = true
		return
	}
	for _, l := range p.lines(path, text) {
		p.set(b, l, true)
	}
}

// Keys whose feature Sesame does not have. Switches that turn a feature
// off (N) are accepted; anything that turns one on is refused.
var (
	offSwitches = map[string]string{
		"ENABLE_CMD_EXEC":      "command messages (remote command execution)",
		"ENABLE_CMD_SUDO_EXEC": "command messages (remote command execution)",
		"FORCE_MASQUERADE":     "NAT access",
		"FORWARD_ALL":          "NAT access",
		"DISABLE_DNAT":         "NAT access",
	}
	refused = map[string]string{
		"CMD_EXEC_USER":       "command messages (remote command execution)",
		"CMD_EXEC_GROUP":      "command messages (remote command execution)",
		"CMD_SUDO_EXEC_USER":  "command messages (remote command execution)",
		"CMD_SUDO_EXEC_GROUP": "command messages (remote command execution)",
		"CMD_CYCLE_OPEN":      "command cycles (CMD_CYCLE_*)",
		"CMD_CYCLE_CLOSE":     "command cycles (CMD_CYCLE_*)",
		"CMD_CYCLE_TIMER":     "command cycles (CMD_CYCLE_*)",
		"FORCE_NAT":           "NAT access",
		"FORCE_SNAT":          "NAT access",
	}
)

var keyLines = map[string]bool{"KEY": true, "KEY_BASE64": true, "HMAC_KEY": true, "HMAC_KEY_BASE64": true}

// set applies one stanza line. keysOnly is an %include_keys file.
func (p *parser) set(b *building, l line, keysOnly bool) {
	st := b.st
	fail := func(format string, args ...any) {
		p.errorf(l.file, l.n, format, args...)
		b.bad = true
	}
	if keysOnly && !keyLines[l.key] && !strings.HasPrefix(l.key, "GPG_") {
		fail("%s: an %%include_keys file holds only KEY, KEY_BASE64, HMAC_KEY and HMAC_KEY_BASE64", l.key)
		return
	}
	if strings.HasPrefix(l.key, "GPG_") {
		fail("%s: GnuPG SPA is not supported; use KEY_BASE64 and HMAC_KEY_BASE64 (fwknop --key-gen)", l.key)
		return
	}
	if what, ok := refused[l.key]; ok {
		fail("%s: Sesame does not support %s", l.key, what)
		return
	}
	if what, ok := offSwitches[l.key]; ok {
		on, err := yesNo(l.val)
		switch {
		case err != nil:
			fail("%s: %v", l.key, err)
		case on:
			fail("%s Y: Sesame does not support %s", l.key, what)
		}
		return
	}
	switch l.key {
	case "DESTINATION":
		if st.Destination = p.addrs(l); st.Destination == nil {
			b.bad = true
		}
	case "OPEN_PORTS", "RESTRICT_PORTS":
		ports, err := parsePorts(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		if l.key == "OPEN_PORTS" {
			st.OpenPorts = ports
		} else {
			st.RestrictPorts = ports
		}
	case "KEY", "HMAC_KEY":
		// fwknopd takes the value as written, up to ';' or the end of
		// the line, trailing blanks included.
		v := []byte(l.raw)
		if strings.EqualFold(l.val, "__CHANGEME__") {
			fail("%s is not set (still __CHANGEME__)", l.key)
			return
		}
		p.setKey(b, l, v)
	case "KEY_BASE64", "HMAC_KEY_BASE64":
		if strings.EqualFold(l.val, "__CHANGEME__") {
			fail("%s is not set (still __CHANGEME__)", l.key)
			return
		}
		v, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(l.val, "="))
		if err != nil || len(v) == 0 {
			fail("%s: not base64-encoded data", l.key)
			return
		}
		p.setKey(b, l, v)
	case "HMAC_DIGEST_TYPE":
		t, err := spa.ParseHashType(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		st.Keys.HMAC, b.hmacType = t, true
	case "ENCRYPTION_MODE":
		m, err := spa.ParseMode(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		if m == spa.Legacy {
			fail("ENCRYPTION_MODE legacy: fwknop's client cannot add an HMAC in legacy mode, and Sesame requires one")
			return
		}
		st.Keys.Mode = m
	case "FW_ACCESS_TIMEOUT", "MAX_FW_TIMEOUT":
		n, err := strconv.Atoi(l.val)
		if err != nil || n < 0 || n > MaxTimeout {
			fail("%s %q: want seconds, 0-%d", l.key, l.val, MaxTimeout)
			return
		}
		d := time.Duration(n) * time.Second
		if l.key == "FW_ACCESS_TIMEOUT" {
			st.AccessTimeout = d
		} else {
			st.MaxTimeout = d
		}
	case "REQUIRE_USERNAME":
		st.RequireUser = l.val
	case "REQUIRE_SOURCE_ADDRESS", "REQUIRE_SOURCE":
		v, err := yesNo(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		st.RequireSource = v
	case "ACCESS_EXPIRE":
		t, err := parseDate(l.val, p.loc)
		if err != nil {
			fail("ACCESS_EXPIRE %q: %v", l.val, err)
			return
		}
		st.Expires = t
	case "ACCESS_EXPIRE_EPOCH":
		n, err := strconv.ParseUint(l.val, 10, 63)
		if err != nil {
			fail("ACCESS_EXPIRE_EPOCH %q: want seconds since 1970", l.val)
			return
		}
		st.Expires = time.Unix(int64(n), 0)
	default:
		fail("unknown access.conf key %q", l.key)
	}
}

func (p *parser) setKey(b *building, l line, v []byte) {
	switch l.key {
	case "KEY", "KEY_BASE64":
		if len(v) > 32 {
			p.errorf(l.file, l.n, "%s: %d bytes; Rijndael keys are at most 32", l.key, len(v))
			b.bad = true
			return
		}
		b.st.Keys.Key, b.key = v, l
	default:
		if len(v) > spa.MaxHMACKeyLen {
			p.errorf(l.file, l.n, "%s: %d bytes; HMAC keys are at most %d", l.key, len(v), spa.MaxHMACKeyLen)
			b.bad = true
			return
		}
		b.st.Keys.HMACKey, b.hmac = v, l
	}
}

// finishStanza checks what a stanza needs as a whole and sets defaults
// (fwknopd's acc_data_is_valid and set_acc_defaults).
func (p *parser) finishStanza(b *building) {
	st := b.st
	if st.AccessTimeout <= 0 {
		st.AccessTimeout = DefaultAccessTimeout
	}
	if st.MaxTimeout <= 0 {
		st.MaxTimeout = DefaultMaxTimeout
	}
	if b.bad {
		return
	}
	if st.Keys.Key == nil {
		p.errorf(st.File, st.Line, "stanza has no KEY or KEY_BASE64")
		return
	}
	if st.Keys.HMACKey == nil {
		p.errorf(st.File, st.Line, "stanza has no HMAC_KEY or HMAC_KEY_BASE64: Sesame accepts only HMAC-authenticated SPA (fwknop --key-gen makes both keys; the client needs --use-hmac)")
		return
	}
	if bytes.Equal(st.Keys.Key, st.Keys.HMACKey) {
		p.errorf(b.hmac.file, b.hmac.n, "the HMAC key is the encryption key; they must differ (fwknopd refuses this too)")
		return
	}
	if st.MaxTimeout < st.AccessTimeout {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: MAX_FW_TIMEOUT (%s) is below FW_ACCESS_TIMEOUT (%s): it caps only the clients' own timeouts (-f), as in fwknopd",
			st.Where(), st.MaxTimeout, st.AccessTimeout))
	}
}

// addrs parses SOURCE or DESTINATION: ANY, or a comma-separated list of
// addresses and networks (CIDR, or fwknop's dotted IPv4 masks). It
// reports errors itself and returns nil on one.
func (p *parser) addrs(l line) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range strings.Split(l.val, ",") {
		e = strings.TrimSpace(e)
		if strings.EqualFold(e, "ANY") {
			out = append(out, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			continue
		}
		pfx, err := parseNet(e)
		if err != nil {
			p.errorf(l.file, l.n, "%s: %v", l.key, err)
			return nil
		}
		out = append(out, pfx)
	}
	return out
}

func parseNet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry")
	}
	addr, mask, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", addr)
	}
	a = a.Unmap()
	bits := a.BitLen()
	if hasMask {
		if m, err := netip.ParseAddr(mask); err == nil && m.Is4() && a.Is4() {
			if bits, err = maskBits(m); err != nil {
				return netip.Prefix{}, fmt.Errorf("%s: %v", s, err)
			}
		} else if n, err := strconv.Atoi(mask); err == nil && n >= 0 && n <= a.BitLen() && allDigits(mask) {
			bits = n
		} else {
			return netip.Prefix{}, fmt.Errorf("%s: bad mask %q", s, mask)
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// maskBits turns a dotted netmask into a prefix length; the mask must be
// contiguous.
func maskBits(m netip.Addr) (int, error) {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %s is not contiguous", m)
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parsePorts reads "tcp/22, udp/53".
func parsePorts(s string) ([]knock.Port, error) {
	var out []knock.Port
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		proto, num, ok := strings.Cut(e, "/")
		if !ok {
			return nil, fmt.Errorf("%q: want PROTO/PORT", e)
		}
		pr, err := knock.ParseProto(proto)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", e, err)
		}
		n, err := knock.ParsePortNum(strings.TrimSpace(num))
		if err != nil {
			return nil, err
		}
		out = append(out, knock.Port{Num: n, Proto: pr})
	}
	return out, nil
}

// yesNo reads fwknopd's booleans: Y... is yes, N... is no.
func yesNo(s string) (bool, error) {
	switch {
	case s[0] == 'Y' || s[0] == 'y':
		return true, nil
	case s[0] == 'N' || s[0] == 'n':
		return false, nil
	}
	return false, fmt.Errorf("%q: want Y or N", s)
}

// parseDate reads ACCESS_EXPIRE's MM/DD/YYYY (a two-digit year is 20YY,
// as fwknopd reads it): midnight local time starting that day.
func parseDate(s string, loc *time.Location) (time.Time, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
	}
	var n [3]int
	for i, p := range parts {
		if !allDigits(p) || len(p) > []int{2, 2, 4}[i] {
			return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
		}
		n[i], _ = strconv.Atoi(p)
	}
	mon, day, year := n[0], n[1], n[2]
	if year < 100 {
		year += 2000
	}
	if mon < 1 || mon > 12 || day < 1 || day > 31 {
		return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
	}
	t := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, loc)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("no day %d in month %d", day, mon)
	}
	return t, nil
}
