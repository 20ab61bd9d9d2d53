// Package access parses fwknopd's access.conf (one file, or a directory
// of *.conf files as fwknopd's --access-folder) into typed stanzas, and
// answers the questions fwknopd asks a stanza: does it match this source,
// has it expired, may these ports open, for how long. Errors name the file
// and line. It refuses what Sesame does not do: GnuPG stanzas, command
// execution and NAT settings, and stanzas without an HMAC key. Deciding
// on a packet is package verify's job.
package access

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
)

// fwknopd's defaults (DEF_FW_ACCESS_TIMEOUT, DEF_MAX_FW_TIMEOUT).
const (
	DefaultAccessTimeout = 30 * time.Second
	DefaultMaxTimeout    = 300 * time.Second
	// MaxTimeout is fwknopd's RCHK_MAX_FW_TIMEOUT, in seconds.
	MaxTimeout = 2 << 22
)

// Stanza is one SOURCE block of access.conf.
type Stanza struct {
	Num  int    // 1-based across all files, fwknopd's "stanza #N"
	File string // where its SOURCE line is
	Line int

	// Source and Destination match the packet's addresses. ANY is
	// 0.0.0.0/0 and ::/0. A nil Destination matches any.
	Source      []netip.Prefix
	Destination []netip.Prefix
	// OpenPorts lists what may be opened; nil allows any port not in
	// RestrictPorts (fwknopd's rule).
	OpenPorts     []knock.Port
	RestrictPorts []knock.Port

	Keys spa.Keys // Key, Mode, HMACKey, HMAC (the digest type)

	AccessTimeout time.Duration // FW_ACCESS_TIMEOUT, default 30s
	MaxTimeout    time.Duration // MAX_FW_TIMEOUT, default 300s
	RequireUser   string        // REQUIRE_USERNAME; "" accepts any
	// RequireSource refuses packets that ask for their source address
	// (fwknop -s) instead of naming one (-a).
	RequireSource bool
	Expires       time.Time // ACCESS_EXPIRE(_EPOCH); zero never expires
}

// Where is "file:line" of the stanza's SOURCE line.
func (s *Stanza) Where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Name identifies the stanza in logs and grants: "spa#N", N as in
// fwknopd's "stanza #N".
func (s *Stanza) Name() string { return fmt.Sprintf("spa#%d", s.Num) }

func contains(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MatchSource reports whether a packet from src may use this stanza.
func (s *Stanza) MatchSource(src netip.Addr) bool { return contains(s.Source, src) }

// MatchDestination reports whether a packet sent to dst may use this
// stanza (always, without DESTINATION).
func (s *Stanza) MatchDestination(dst netip.Addr) bool {
	return s.Destination == nil || contains(s.Destination, dst)
}

// Expired reports whether the stanza's ACCESS_EXPIRE time has passed
// (fwknopd: now later than the expiry).
func (s *Stanza) Expired(now time.Time) bool {
	return !s.Expires.IsZero() && now.After(s.Expires)
}

// Timeout is how long a grant lasts, as fwknopd's set_timeout decides:
// the client's timeout (in seconds) when it sent one, capped at
// MAX_FW_TIMEOUT; otherwise FW_ACCESS_TIMEOUT.
func (s *Stanza) Timeout(client int) time.Duration {
	if client > 0 {
		if c := time.Duration(client) * time.Second; c < s.MaxTimeout {
			return c
		}
		return s.MaxTimeout
	}
	return s.AccessTimeout
}

// AllowPorts reports whether every requested port may open: none in
// RESTRICT_PORTS and, when OPEN_PORTS is set, all in it. When not, bad is
// the first port refused.
func (s *Stanza) AllowPorts(req []knock.Port) (bad knock.Port, ok bool) {
	for _, p := range req {
		if has(s.RestrictPorts, p) || (s.OpenPorts != nil && !has(s.OpenPorts, p)) {
			return p, false
		}
	}
	return knock.Port{}, len(req) > 0
}

func has(ps []knock.Port, p knock.Port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
