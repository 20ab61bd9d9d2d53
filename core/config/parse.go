package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Error is a problem at one line of a config file. Line is 0 for a
// problem of the file as a whole (a default it leaves in place).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Load reads and parses path, then checks the one-time sequence files the
// doors name and reads each one's current sequence.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return LoadBytes(path, data)
}

// LoadBytes is Load for content already read from path.
func LoadBytes(path string, data []byte) (*Config, error) {
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := cfg.loadOneTime(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse parses config text. It touches no files, so it is safe to fuzz;
// doors with a one-time file get their sequence from Load.
// All problems are reported, joined, each as an *Error.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{
		file:   file,
		badSeq: map[*Door]bool{},
		// Sized for the sections there may be: growing a map of 100k
		// names step by step costs more than counting lines.
		names: make(map[string]int, bytes.Count(data, []byte("\n"))/4),
		cfg: &Config{File: file, Options: Options{
			MaxAttempts:       DefaultMaxAttempts,
			Firewall:          "auto",
			ReconcileInterval: DefaultReconcileInterval,
			RescueAfter:       DefaultRescueAfter,
			SPAPort:           DefaultSPAPort,
			SPAMaxAge:         DefaultSPAMaxAge,
		}},
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		p.line++
		p.parseLine(strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		p.errorf("%v", err)
	}
	p.finish()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.cfg, nil
}

type parser struct {
	file    string
	line    int
	cfg     *Config
	section string         // "" before the first section
	door    *Door          // nil in [options]
	badSeq  map[*Door]bool // a Sequence line was rejected: no second "empty" error
	broken  bool           // the current section's header was bad (already reported)
	names   map[string]int // door name -> line of its first section
	errs    []error
}

func (p *parser) errorf(format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parseLine(line string) {
	if line == "" || line[0] == '#' {
		return
	}
	if line[0] == '[' {
		p.header(line)
		return
	}
	if p.section == "" {
		p.errorf("all directives must belong to a section")
		return
	}
	rawKey, val, hasEq := strings.Cut(line, "=")
	rawKey = strings.TrimSpace(rawKey)
	val = strings.TrimSpace(val)
	key := keySpellings[strings.ToUpper(rawKey)]
	if key == KeyUseSyslog {
		// knockd accepts the bare key anywhere; Sesame also takes = yes|no.
		p.cfg.Options.Lines.set(KeyUseSyslog, p.line)
		if !hasEq {
			p.cfg.Options.UseSyslog = true
			return
		}
		b, err := parseBool(val)
		if err != nil {
			p.errorf("UseSyslog: %v", err)
			return
		}
		p.cfg.Options.UseSyslog = b
		return
	}
	if !hasEq {
		p.errorf("syntax error: %q is not \"key = value\"", line)
		return
	}
	global := p.door == nil
	switch {
	case p.broken:
		// The header of this section was bad (one error already): check
		// the values, but not where the keys stand.
		if key == keyNone {
			p.unknownKey(rawKey, global)
		} else if keyInfos[key].global {
			p.optionKey(key, val)
		} else if p.door != nil {
			p.doorKey(p.door, key, val)
		}
	case key == keyNone:
		p.unknownKey(rawKey, global)
	case global && !keyInfos[key].global:
		p.errorf("%s can only be used within a door section", shown(rawKey))
	case !global && keyInfos[key].global:
		p.errorf("%s is a global option: it belongs in [options]", shown(rawKey))
	case global:
		p.optionKey(key, val)
	default:
		p.doorKey(p.door, key, val)
	}
}

// unknownKey reports a key no section takes, suggesting the closest
// known one when it looks like a misspelling.
func (p *parser) unknownKey(rawKey string, global bool) {
	if s := suggest(rawKey, global); s != "" {
		p.errorf("unknown option %s; did you mean %s?", shown(rawKey), s)
		return
	}
	if s := suggest(rawKey, !global); s != "" {
		where := "a door section"
		if !global {
			where = "[options]"
		}
		p.errorf("unknown option %s; did you mean %s (which belongs in %s)?", shown(rawKey), s, where)
		return
	}
	p.errorf("unknown option %s", shown(rawKey))
}

// header opens the section a "[name]" line names. A header without its
// closing bracket, or with text after it, is one error; the lines after
// it still belong to that section, so that they are checked without an
// error each for standing in the wrong section.
func (p *parser) header(line string) {
	name, rest, closed := strings.Cut(line[1:], "]")
	p.broken = false
	switch {
	case !closed:
		p.errorf("section header %s lacks its closing ]", line)
		p.broken = true
		name = strings.TrimSpace(name)
	case rest != "":
		p.errorf("text after ] in section header %s (there are no comments after values)", line)
		p.broken = true
	}
	if name == "" {
		if !p.broken {
			p.errorf("bad section name")
		}
		p.broken = true
		p.section, p.door = "[]", nil
		return
	}
	p.section = name
	p.door = nil
	// Only the exact "options" is global: knockd treats [Options] as a door.
	if name == "options" {
		return
	}
	p.door = &Door{
		Name: name, File: p.file, Line: p.line,
		SeqTimeout: DefaultSeqTimeout,
		CmdTimeout: DefaultCmdTimeout,
	}
	if p.broken {
		// Its keys are checked, but it is not a door anyone asked for.
		return
	}
	p.checkDoorName(name)
	p.cfg.Doors = append(p.cfg.Doors, p.door)
}

// checkDoorName refuses a door name the rest of Sesame cannot keep apart
// or store. knockd runs two sections of one name as two doors, but
// Sesame's grants, journal and logs know a door by its name, so a second
// door of the same name would share (and extend, and revoke) the first
// one's grants. The journal refuses names longer than it can hold, which
// would refuse every grant of that door at run time.
func (p *parser) checkDoorName(name string) {
	if first, ok := p.names[name]; ok {
		p.errorf("door %q is already defined at line %d: door names must be unique", name, first)
	} else {
		p.names[name] = p.line
	}
	if len(name) > journal.MaxDoorLen {
		p.errorf("door name is %d bytes long, at most %d allowed", len(name), journal.MaxDoorLen)
	}
	if !utf8.ValidString(name) {
		p.errorf("door name %q is not valid UTF-8", name)
	}
}

func (p *parser) optionKey(key Key, val string) {
	o := &p.cfg.Options
	o.Lines.set(key, p.line)
	switch key {
	case KeyLogFile:
		o.LogFile = val
	case KeyPidFile:
		o.PidFile = val
	case KeyInterface:
		ifs, err := parseInterfaces(val)
		if err != nil {
			p.errorf("Interface: %v", err)
			return
		}
		o.Interfaces = ifs
	case KeyMaxAttempts:
		n, err := parseInt(val, 1, 1<<24)
		if err != nil {
			p.errorf("MaxAttempts: %v", err)
			return
		}
		o.MaxAttempts = n
	case KeyFirewall:
		switch v := strings.ToLower(val); v {
		case "auto", "iptables", "iptables-nft", "iptables-legacy", "nftables":
			o.Firewall = v
		default:
			p.errorf("Firewall: unknown backend %q (want auto, iptables, iptables-nft, iptables-legacy or nftables)", val)
		}
	case KeyReconcileInterval:
		d, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Reconcile_Interval: %v", err)
			return
		}
		o.ReconcileInterval = d
	case KeyRescuePorts:
		ps, err := knock.ParsePortList(val)
		if err != nil {
			p.errorf("Rescue_Ports: %v", err)
			return
		}
		o.RescuePorts = ps
	case KeyRescueAfter:
		d, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Rescue_After: %v", err)
			return
		}
		// The heartbeat lives in ipset or nft timeouts, whole seconds.
		if d < time.Second {
			p.errorf("Rescue_After: %s is less than 1 second", val)
			return
		}
		o.RescueAfter = d
	case KeyRescueFrom:
		pfx, err := parsePrefixes(val)
		if err != nil {
			p.errorf("Rescue_From: %v", err)
			return
		}
		o.RescueFrom = pfx
	case KeyMetrics:
		ap, err := parseListen(val)
		if err != nil {
			p.errorf("Metrics: %v", err)
			return
		}
		o.Metrics = ap
		if !ap.Addr().IsLoopback() {
			p.warnf(p.line, "Metrics listens on %s, which is not a loopback address: the metrics name doors and show their activity to anyone who can reach it; keep it on 127.0.0.1 or ::1, or behind a proxy that authenticates", ap)
		}
	case KeyMetricsFile:
		if !filepath.IsAbs(val) {
			p.errorf("Metrics_File: %q is not an absolute path", val)
			return
		}
		o.MetricsFile = filepath.Clean(val)
		if !strings.HasSuffix(val, ".prom") {
			p.warnf(p.line, "Metrics_File %s does not end in .prom: node_exporter's textfile collector reads only *.prom files", val)
		}
	case KeySPAAccess, KeySPAAuthorizedKeys:
		if val == "" {
			p.errorf("%s: empty path", key)
			return
		}
		if key == KeySPAAccess {
			o.SPAAccess = val
		} else {
			o.SPAAuthorizedKeys = val
		}
	case KeySPAPort:
		port, err := parseSPAPort(val)
		if err != nil {
			p.errorf("SPA_Port: %v", err)
			return
		}
		o.SPAPort = port
	case KeyFleetEndpoints, KeyFleetGroup, KeyFleetNode, KeyFleetCA, KeyFleetCert, KeyFleetKey:
		// The fleet package owns these keys' syntax; its errors start
		// with the key's name.
		if _, err := o.Fleet.Set(key.String(), val); err != nil {
			p.errorf("%v", err)
		}
	case KeySPAMaxAge:
		// Whole seconds, as fwknopd's MAX_SPA_PACKET_AGE.
		n, err := parseInt(val, 1, int(MaxSPAMaxAge/time.Second))
		if err != nil {
			p.errorf("SPA_Max_Age: %v (whole seconds)", err)
			return
		}
		o.SPAMaxAge = time.Duration(n) * time.Second
	}
}

// parseListen parses an address and port to listen on: an IP literal
// (IPv6 in brackets) and a port from 1 to 65535. Host names are refused:
// what a name resolves to may change under a running daemon.
func parseListen(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDRESS:PORT with an IP address (127.0.0.1:10171, [::1]:10171)", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: zoned addresses are not supported", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// parseSPAPort takes "62201/udp", "62201:udp" or "62201": SPA packets are
// UDP datagrams.
func parseSPAPort(s string) (uint16, error) {
	num, proto, hasProto := strings.Cut(strings.ReplaceAll(s, ":", "/"), "/")
	if hasProto && !strings.EqualFold(strings.TrimSpace(proto), "udp") {
		return 0, fmt.Errorf("%q: SPA packets are UDP (want PORT/udp)", s)
	}
	return knock.ParsePortNum(strings.TrimSpace(num))
}

func (p *parser) doorKey(d *Door, key Key, val string) {
	d.Lines.set(key, p.line)
	switch key {
	case KeyTarget:
		a, err := netip.ParseAddr(val)
		if err != nil {
			p.errorf("Target: %q is not an IP address", val)
			return
		}
		d.Target = a.Unmap()
	case KeySequence:
		seq, err := knock.ParseSequence(val)
		if err != nil {
			p.errorf("Sequence: %v", err)
			p.badSeq[d] = true
			return
		}
		if len(seq) > MaxSequence {
			p.errorf("Sequence: %d ports, at most %d allowed", len(seq), MaxSequence)
			return
		}
		d.Sequence = seq
	case KeyOneTimeSequences:
		if val == "" {
			p.errorf("One_Time_Sequences: empty path")
			return
		}
		d.OneTimeFile = val
	case KeySeqTimeout:
		t, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Seq_Timeout: %v", err)
			return
		}
		d.SeqTimeout = t
	case KeyCmdTimeout:
		t, err := parseSeconds(val, true)
		if err != nil {
			p.errorf("Cmd_Timeout: %v", err)
			return
		}
		d.CmdTimeout = t
	case KeyOpenTimeout:
		t, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Open_Timeout: %v", err)
			return
		}
		d.OpenTimeout = t
	case KeyStartCommand:
		d.Start = Command{Text: val, Set: true}
	case KeyStartCommand6:
		d.Start6 = Command{Text: val, Set: true}
	case KeyStopCommand:
		d.Stop = Command{Text: val, Set: true}
	case KeyStopCommand6:
		d.Stop6 = Command{Text: val, Set: true}
	case KeyTCPFlags:
		// Repeated lines accumulate, as in knockd.
		m, err := parseFlags(val, d.Flags)
		if err != nil {
			p.errorf("TCPFlags: %v", err)
			return
		}
		d.Flags = m
	case KeyOpen:
		ps, err := knock.ParsePortList(val)
		if err != nil {
			p.errorf("Open: %v", err)
			return
		}
		d.Open = ps
	case KeyFleet:
		b, err := parseBool(val)
		if err != nil {
			p.errorf("Fleet: %v", err)
			return
		}
		d.Fleet = b
	}
}

// finish checks what can only be checked once a door is complete.
func (p *parser) finish() {
	for _, d := range p.cfg.Doors {
		if d.OneTimeFile != "" {
			if len(d.Sequence) > 0 {
				p.warnf(d.KeyLine(KeySequence), "door %q: Sequence is ignored: One_Time_Sequences supplies it", d.Name)
				d.Sequence = nil
			}
			continue
		}
		if len(d.Sequence) == 0 && !p.badSeq[d] {
			p.errs = append(p.errs, &Error{File: d.File, Line: d.Line, Msg: fmt.Sprintf("door %q has an empty knock sequence", d.Name)})
		}
	}
	p.spaPortClash()
	p.fleetChecks()
	if len(p.errs) > 0 {
		return
	}
	p.likelyMistakes()
}

// spaPortClash refuses a door that knocks on SPA_Port/udp while SPA is
// on: every SPA packet would also count as that knock.
func (p *parser) spaPortClash() {
	o := &p.cfg.Options
	if !o.SPA() {
		return
	}
	spa := knock.Port{Num: o.SPAPort, Proto: knock.UDP}
	where := "its default"
	if l := o.Lines.Of(KeySPAPort); l > 0 {
		where = fmt.Sprintf("line %d", l)
	}
	for _, d := range p.cfg.Doors {
		if slices.Contains(d.Sequence, spa) {
			p.errs = append(p.errs, &Error{File: d.File, Line: d.KeyLine(KeySequence),
				Msg: fmt.Sprintf("door %q knocks on %d/udp, the SPA_Port (%s): SPA packets would count as knocks; pick another port for one of them", d.Name, o.SPAPort, where)})
		}
	}
}

// fleetChecks validates the Fleet_ keys together (each error at the line
// of the key to fix, or of Fleet_Endpoints for a key that is missing)
// and refuses a Fleet door without a fleet to share with.
func (p *parser) fleetChecks() {
	o := &p.cfg.Options
	if err := o.Fleet.Validate(); err != nil {
		line := 0
		var ce *fleet.ConfigError
		if errors.As(err, &ce) {
			if k, ok := keySpellings[strings.ToUpper(ce.Key)]; ok {
				line = o.Lines.Of(k)
			}
		}
		if line == 0 {
			line = o.Lines.Of(KeyFleetEndpoints)
		}
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: err.Error()})
	}
	if o.Fleet.Enabled() {
		return
	}
	for _, d := range p.cfg.Doors {
		if d.Fleet {
			p.errs = append(p.errs, &Error{File: d.File, Line: d.KeyLine(KeyFleet),
				Msg: fmt.Sprintf("door %q: Fleet = yes, but [options] has no %s: there is no group to share its grants with", d.Name, fleet.KeyEndpoints)})
		}
	}
}

// likelyMistakes warns about what works but is seldom meant: two doors
// with one sequence, a door that opens nothing, a stop command that never
// runs. Past maxSameWarnings doors of one kind, one line counts the rest.
func (p *parser) likelyMistakes() {
	var same, idle, stop, stop6 warnCount
	// Keyed by a hash (no string per door: a config may have 100k doors);
	// equal hashes are compared element by element.
	seqs := make(map[uint64]*Door, len(p.cfg.Doors))
	for _, d := range p.cfg.Doors {
		if len(d.Sequence) > 0 {
			h := seqHash(d.Sequence)
			if first, ok := seqs[h]; !ok {
				seqs[h] = d
			} else if slices.Equal(first.Sequence, d.Sequence) && same.more() {
				p.warnf(d.KeyLine(KeySequence), "door %q has the same sequence as door %q (line %d): one knock opens both", d.Name, first.Name, first.KeyLine(KeySequence))
			}
		}
		start4, _ := d.Commands(false)
		start6, _ := d.Commands(true)
		if start4 == "" && start6 == "" && len(d.Open) == 0 && idle.more() {
			p.warnf(d.Line, "door %q has neither a start_command nor Open: a knock only logs OPEN SESAME", d.Name)
		}
		// knockd runs no stop command without a start command (nor does
		// Sesame): nothing would undo anything.
		if d.Stop.Text != "" && start4 == "" && start6 == "" {
			if stop.more() {
				p.warnf(d.KeyLine(KeyStopCommand), "door %q: stop_command without start_command never runs", d.Name)
			}
		} else if d.Stop6.Text != "" && start6 == "" && stop6.more() {
			p.warnf(d.KeyLine(KeyStopCommand6), "door %q: stop_command_6 without a start command for IPv6 never runs", d.Name)
		}
	}
	same.summary(p, "doors have the same sequence as an earlier one")
	idle.summary(p, "doors have neither a start_command nor Open")
	stop.summary(p, "doors have a stop_command without start_command")
	stop6.summary(p, "doors have a stop_command_6 without a start command for IPv6")
}

// maxSameWarnings bounds the warnings of one kind: a generated config of
// 30,000 doors that all open nothing needs one line about it, not 30,000.
const maxSameWarnings = 10

type warnCount int

// more counts one more case and reports whether it gets its own line.
func (n *warnCount) more() bool {
	*n++
	return *n <= maxSameWarnings
}

func (n warnCount) summary(p *parser, what string) {
	if n > maxSameWarnings {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: %d more %s (not listed one by one)", p.file, n-maxSameWarnings, what))
	}
}

// seqHash is FNV-1a over the sequence's ports and protocols.
func seqHash(seq []knock.Port) uint64 {
	h := uint64(14695981039346656037)
	for _, p := range seq {
		for _, b := range [3]byte{byte(p.Num >> 8), byte(p.Num), byte(p.Proto)} {
			h ^= uint64(b)
			h *= 1099511628211
		}
	}
	return h
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: ", p.file, line)+fmt.Sprintf(format, args...))
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", s)
}

func parseInt(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, lo, hi)
	}
	return n, nil
}

// parseSeconds takes whole or decimal seconds ("25", "0.5"). knockd's atoi
// turns "abc" into 0; here it is an error.
func parseSeconds(s string, zeroOK bool) (time.Duration, error) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }) >= 0 {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	const max = 366 * 24 * 3600
	if f > max {
		return 0, fmt.Errorf("%s seconds is more than a year", s)
	}
	d := time.Duration(f * float64(time.Second))
	if d <= 0 && !(zeroOK && f == 0) {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	return d, nil
}

func parseFlags(s string, m knock.FlagMask) (knock.FlagMask, error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		neg := strings.HasPrefix(f, "!")
		bit, ok := knock.FlagNames[strings.TrimPrefix(f, "!")]
		if !ok {
			return m, fmt.Errorf("unrecognized flag %q", f)
		}
		// A later mention of a flag overrides an earlier one, as in knockd.
		m.Set &^= bit
		m.Clear &^= bit
		if neg {
			m.Clear |= bit
		} else {
			m.Set |= bit
		}
	}
	return m, nil
}

func parseInterfaces(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, fmt.Errorf("empty interface name in %q", s)
		}
		// Linux IFNAMSIZ is 16 including the NUL.
		if len(f) > 15 || strings.ContainsAny(f, "/ \t:") {
			return nil, fmt.Errorf("%q is not an interface name", f)
		}
		out = append(out, f)
	}
	return out, nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or prefix", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
