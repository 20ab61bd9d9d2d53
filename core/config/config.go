// Package config reads knockd.conf files, with Sesame's extensions, into
// typed values. It owns the syntax and its validation: every error names
// the file, the line and the reason. It does not run anything; one-time
// sequence files are opened only to check they are usable and to read
// their first sequence (package onetime owns them afterwards).
package config

import (
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/core/knock"
)

// Defaults, as knockd 0.8 has them where knockd has the key.
const (
	DefaultSeqTimeout        = 25 * time.Second
	DefaultCmdTimeout        = 10 * time.Second
	DefaultMaxAttempts       = 65536
	DefaultReconcileInterval = 5 * time.Second
	DefaultRescueAfter       = 30 * time.Second
	DefaultInterface         = "eth0"
	// DefaultSPAPort is fwknop's SPA port (udp), SPA_Port's default.
	DefaultSPAPort = 62201
	// DefaultSPAMaxAge is fwknopd's MAX_SPA_PACKET_AGE, SPA_Max_Age's
	// default: how far an SPA packet's timestamp may be from now.
	DefaultSPAMaxAge = 120 * time.Second
	// MaxSPAMaxAge bounds SPA_Max_Age: a replay digest is kept for about
	// twice it.
	MaxSPAMaxAge = 24 * time.Hour
	// MaxSequence is knockd's SEQ_MAX: longer sequences are an error there,
	// so a config Sesame accepts stays one knockd accepts.
	MaxSequence = 32
)

// Config is a parsed configuration file.
type Config struct {
	File    string
	Options Options
	Doors   []*Door
	// Warnings are problems that do not stop Sesame, as "file:line: text"
	// (a one-time file with no sequences left disables its door rather
	// than the daemon; two doors with one sequence both open).
	Warnings []string
}

// Options is the [options] section.
type Options struct {
	UseSyslog bool
	LogFile   string
	PidFile   string
	// Interfaces to capture on; knockd takes one, Sesame a comma list.
	// Empty means DefaultInterface unless -i is given.
	Interfaces []string
	// MaxAttempts caps in-progress knock attempts across all sources; the
	// oldest is evicted when a new one would exceed it.
	MaxAttempts int
	// Firewall selects the backend for native grants (door key Open).
	Firewall string
	// ReconcileInterval is how often native grants are checked against
	// the kernel and repaired.
	ReconcileInterval time.Duration
	// Rescue port settings; RescuePorts empty means off.
	RescuePorts []knock.Port
	RescueAfter time.Duration
	RescueFrom  []netip.Prefix
	// Metrics is where /metrics is served (Prometheus text format); the
	// zero value means not at all.
	Metrics netip.AddrPort
	// MetricsFile is a file the same families are written to every 15 s
	// (node_exporter's textfile collector); "" means none.
	MetricsFile string
	// SPA: fwknop's access.conf (a file or a folder of *.conf) and an
	// authorized_keys file of SSH keys that may sign knocks; either
	// turns Single Packet Authorization on. Both take their packets on
	// SPAPort (udp), whose timestamps may be SPAMaxAge from now either way.
	SPAAccess         string
	SPAAuthorizedKeys string
	SPAPort           uint16
	SPAMaxAge         time.Duration
	// Fleet is the group this host shares the grants of its Fleet doors
	// with (Fleet_Endpoints and the other Fleet_ keys); its zero value
	// is no fleet. Fleet.Node is empty unless Fleet_Node is set (see
	// fleet.Config.WithDefaults).
	Fleet fleet.Config
	// Lines says where each global key was set (Lines.Of(KeyLogFile)).
	Lines Lines
}

// SPA reports whether Single Packet Authorization is on: SPA_Access or
// SPA_Authorized_Keys is set.
func (o *Options) SPA() bool { return o.SPAAccess != "" || o.SPAAuthorizedKeys != "" }

// Command is a knockd command string. Set distinguishes "absent" from
// "present but empty", which matters for the _6 variants: an empty
// start_command_6 disables the IPv6 command instead of falling back.
type Command struct {
	Text string
	Set  bool
}

// Door is one knock sequence and what it opens.
type Door struct {
	Name string
	File string
	Line int // line of the [name] header

	Sequence []knock.Port
	// OneTimeFile, when set, supplies the sequence; each use consumes one line.
	OneTimeFile string
	// Disabled is set when a one-time file has no sequences left.
	Disabled bool

	SeqTimeout time.Duration
	Flags      knock.FlagMask
	Target     netip.Addr // zero when the door listens on the interfaces' addresses

	Start, Start6, Stop, Stop6 Command
	CmdTimeout                 time.Duration

	// Open lists ports granted natively to the knocker (Sesame extension).
	Open        []knock.Port
	OpenTimeout time.Duration // 0 means CmdTimeout
	// Fleet: the door's grants are shared with the fleet group, and
	// grants of the group for a door of this name are applied here.
	Fleet bool

	// Lines says where each of the door's keys was set.
	Lines Lines
}

// KeyLine is the line where the door set k, or its header's line when
// it did not.
func (d *Door) KeyLine(k Key) int {
	if l := d.Lines.Of(k); l > 0 {
		return l
	}
	return d.Line
}

// Commands returns the start and stop command templates for a knocker of
// the given family, with knockd's fallback: an IPv6 knocker gets the _6
// command when it is set (even to ""), else the IPv4 one; start and stop
// fall back independently.
func (d *Door) Commands(ipv6 bool) (start, stop string) {
	start, stop = d.Start.Text, d.Stop.Text
	if ipv6 {
		if d.Start6.Set {
			start = d.Start6.Text
		}
		if d.Stop6.Set {
			stop = d.Stop6.Text
		}
	}
	return start, stop
}

// GrantTimeout is how long a grant made by this door lasts.
func (d *Door) GrantTimeout() time.Duration {
	if len(d.Open) > 0 && d.OpenTimeout > 0 {
		return d.OpenTimeout
	}
	return d.CmdTimeout
}

// Accepts reports whether a knock to dst counts for this door: a door
// with a Target listens only there, other doors on local addresses.
func (d *Door) Accepts(dst netip.Addr, local func(netip.Addr) bool) bool {
	if d.Target.IsValid() {
		return dst == d.Target
	}
	return local(dst)
}
