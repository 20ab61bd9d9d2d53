package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Error is a problem at one line of a config file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

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
	if line[0] == '[' && line[len(line)-1] == ']' && len(line) >= 2 {
		name := line[1 : len(line)-1]
		if name == "" {
			p.errorf("bad section name")
			return
		}
		p.section = name
		p.door = nil
		// Only the exact "options" is global: knockd treats [Options] as a door.
		if name != "options" {
			p.checkDoorName(name)
			p.door = &Door{
				Name: name, File: p.file, Line: p.line,
				SeqTimeout: DefaultSeqTimeout,
				CmdTimeout: DefaultCmdTimeout,
			}
			p.cfg.Doors = append(p.cfg.Doors, p.door)
		}
		return
	}
	if p.section == "" {
		p.errorf("all directives must belong to a section")
		return
	}
	key, val, hasEq := strings.Cut(line, "=")
	key = strings.ToUpper(strings.TrimSpace(key))
	val = strings.TrimSpace(val)
	if key == "USESYSLOG" {
		// knockd accepts the bare key anywhere; Sesame also takes = yes|no.
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
	if p.door == nil {
		p.optionKey(key, val)
	} else {
		p.doorKey(p.door, key, val)
	}
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

func (p *parser) optionKey(key, val string) {
	o := &p.cfg.Options
	switch key {
	case "LOGFILE":
		o.LogFile = val
	case "PIDFILE":
		o.PidFile = val
	case "INTERFACE":
		ifs, err := parseInterfaces(val)
		if err != nil {
			p.errorf("Interface: %v", err)
			return
		}
		o.Interfaces = ifs
	case "MAXATTEMPTS":
		n, err := parseInt(val, 1, 1<<24)
		if err != nil {
			p.errorf("MaxAttempts: %v", err)
			return
		}
		o.MaxAttempts = n
	case "FIREWALL":
		switch v := strings.ToLower(val); v {
		case "auto", "iptables", "iptables-nft", "iptables-legacy", "nftables":
			o.Firewall = v
		default:
			p.errorf("Firewall: unknown backend %q (want auto, iptables, iptables-nft, iptables-legacy or nftables)", val)
		}
	case "RECONCILE_INTERVAL":
		d, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Reconcile_Interval: %v", err)
			return
		}
		o.ReconcileInterval = d
	case "RESCUE_PORTS":
		ps, err := knock.ParsePortList(val)
		if err != nil {
			p.errorf("Rescue_Ports: %v", err)
			return
		}
		o.RescuePorts = ps
	case "RESCUE_AFTER":
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
	case "RESCUE_FROM":
		pfx, err := parsePrefixes(val)
		if err != nil {
			p.errorf("Rescue_From: %v", err)
			return
		}
		o.RescueFrom = pfx
	default:
		if doorKeys[key] {
			p.errorf("%q can only be used within a door section", key)
			return
		}
		p.errorf("unknown option %q", key)
	}
}

var doorKeys = map[string]bool{
	"TARGET": true, "SEQUENCE": true, "ONE_TIME_SEQUENCES": true, "SEQ_TIMEOUT": true, "TIMEOUT": true,
	"START_COMMAND": true, "COMMAND": true, "START_COMMAND_6": true, "COMMAND_6": true,
	"STOP_COMMAND": true, "STOP_COMMAND_6": true, "CMD_TIMEOUT": true, "TCPFLAGS": true,
	"OPEN": true, "OPEN_TIMEOUT": true,
}

func (p *parser) doorKey(d *Door, key, val string) {
	switch key {
	case "TARGET":
		a, err := netip.ParseAddr(val)
		if err != nil {
			p.errorf("Target: %q is not an IP address", val)
			return
		}
		d.Target = a.Unmap()
	case "SEQUENCE":
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
	case "ONE_TIME_SEQUENCES":
		if val == "" {
			p.errorf("One_Time_Sequences: empty path")
			return
		}
		d.OneTimeFile = val
	case "SEQ_TIMEOUT", "TIMEOUT":
		t, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Seq_Timeout: %v", err)
			return
		}
		d.SeqTimeout = t
	case "CMD_TIMEOUT":
		t, err := parseSeconds(val, true)
		if err != nil {
			p.errorf("Cmd_Timeout: %v", err)
			return
		}
		d.CmdTimeout = t
	case "OPEN_TIMEOUT":
		t, err := parseSeconds(val, false)
		if err != nil {
			p.errorf("Open_Timeout: %v", err)
			return
		}
		d.OpenTimeout = t
	case "START_COMMAND", "COMMAND":
		d.Start = Command{Text: val, Set: true}
	case "START_COMMAND_6", "COMMAND_6":
		d.Start6 = Command{Text: val, Set: true}
	case "STOP_COMMAND":
		d.Stop = Command{Text: val, Set: true}
	case "STOP_COMMAND_6":
		d.Stop6 = Command{Text: val, Set: true}
	case "TCPFLAGS":
		// Repeated lines accumulate, as in knockd.
		m, err := parseFlags(val, d.Flags)
		if err != nil {
			p.errorf("TCPFlags: %v", err)
			return
		}
		d.Flags = m
	case "OPEN":
		ps, err := knock.ParsePortList(val)
		if err != nil {
			p.errorf("Open: %v", err)
			return
		}
		d.Open = ps
	default:
		p.errorf("unknown door key %q", key)
	}
}

// finish checks what can only be checked once a door is complete.
func (p *parser) finish() {
	for _, d := range p.cfg.Doors {
		if d.OneTimeFile != "" {
			if len(d.Sequence) > 0 {
				p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: door %q: Sequence is ignored: One_Time_Sequences supplies it", d.File, d.Line, d.Name))
				d.Sequence = nil
			}
			continue
		}
		if len(d.Sequence) == 0 && !p.badSeq[d] {
			p.errs = append(p.errs, &Error{File: d.File, Line: d.Line, Msg: fmt.Sprintf("door %q has an empty knock sequence", d.Name)})
		}
	}
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
