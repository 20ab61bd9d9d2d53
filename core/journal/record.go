package journal

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/sesame-knock/sesame/core/knock"
)

// Record is one open grant as the journal knows it.
type Record struct {
	ID       string       // unique grant id: 1-32 of [A-Za-z0-9_-] (see NewID)
	Door     string       // door (config section) name
	Source   netip.Addr   // the knocker
	StopCmd  string       // the expanded stop command, "" when none
	Open     []knock.Port // native grant ports, nil when none
	Backend  string       // native backend name ("iptables", "nftables"), "" when none
	Start    time.Time    // wall clock
	Deadline time.Time    // wall clock; moved by Extend and Started
	// Timeout is the door's grant timeout when the grant was made (0 in
	// records written before it was journaled): a resumed grant is never
	// given more time than this.
	Timeout time.Duration
	// StartPending is set by the writer of a grant whose start command
	// has not finished yet; a Started record clears it. A replayed record
	// with StartPending set means the start command may still be running
	// or may have finished while no daemon was watching.
	StartPending bool

	// Auth says how the grant was asked for: "" for a knock, "fwknop"
	// for an fwknop SPA packet, "ssh" for an SSH-signed knock. User is
	// who asked (the SPA packet's user name as claimed, the SSH key's
	// comment), Key the SSH key's SHA-256 fingerprint ("SHA256:...").
	Auth string
	User string
	Key  string
	// Replay is the digest of the SPA packet that asked for the grant,
	// kept by the journal until it expires, also after the grant ends
	// (see Journal.Replays); zero for knocks.
	Replay Replay

	// Fleet grants. Shared is the door name under which a grant made
	// here is shared with the group ("" for a grant kept local);
	// Published is set once the group confirmed it (see
	// Journal.Published), so that after a crash every shared grant not
	// yet published is published again. Origin is the node a grant
	// received from the group was made on ("" for grants made here);
	// such a grant keeps its origin's id and absolute deadline.
	Shared    string
	Published bool
	Origin    string

	// RevokeStarted is set when a Revoking record was journaled without a
	// following Revoked: the stop command may or may not have run. It is
	// never written by Grant; the journal derives it on replay.
	RevokeStarted bool
}

// Replay is the digest of an accepted SPA packet (SHA-256: of an fwknop
// packet's text, of an SSH-signed knock's body) and the time until which
// the packet could still be accepted. The journal keeps it that long, so
// that a restarted daemon still refuses the packet as a replay.
type Replay struct {
	Digest  [32]byte
	Expires time.Time
}

// IsZero reports whether r holds no digest.
func (r Replay) IsZero() bool { return r.Expires.IsZero() }

// Limits on record fields; a record outside them is refused by Grant and
// skipped on replay.
const (
	MaxIDLen      = 32
	MaxDoorLen    = 1024
	MaxBackendLen = 32
	MaxAuthLen    = 16
	MaxUserLen    = 256      // an SPA user name, an SSH key's comment
	MaxKeyLen     = 128      // an SSH key fingerprint
	MaxOriginLen  = 64       // a fleet node's name
	MaxPayload    = 64 << 10 // bytes of JSON in one frame
)

// NewID returns a time-ordered grant id: 16 hex digits of the Unix time in
// nanoseconds followed by 16 hex digits of randomness (32 characters).
// Ids sort by creation time, which makes `sesame grants` and the log easy
// to read, and the random half keeps them unique across restarts and clock
// steps.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	// crypto/rand.Read never returns an error (it aborts the program if
	// the kernel's generator is unavailable).
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether id is acceptable as a grant id.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// validate is the single definition of a well-formed record, used before
// writing and after reading.
func (r *Record) validate() error {
	if !ValidID(r.ID) {
		return fmt.Errorf("bad id %q: want 1-%d of [A-Za-z0-9_-]", r.ID, MaxIDLen)
	}
	if r.Door == "" || len(r.Door) > MaxDoorLen || !utf8.ValidString(r.Door) {
		return fmt.Errorf("bad door name %q", r.Door)
	}
	if !r.Source.IsValid() {
		return fmt.Errorf("no source address")
	}
	if len(r.Backend) > MaxBackendLen || (r.Backend != "" && !ValidID(r.Backend)) {
		return fmt.Errorf("bad backend name %q", r.Backend)
	}
	if !utf8.ValidString(r.StopCmd) {
		return fmt.Errorf("stop command is not valid UTF-8")
	}
	for _, p := range r.Open {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return fmt.Errorf("bad port %s", p)
		}
	}
	if r.Start.IsZero() || r.Deadline.IsZero() {
		return fmt.Errorf("missing start or deadline")
	}
	if r.Timeout < 0 {
		return fmt.Errorf("negative timeout %v", r.Timeout)
	}
	if len(r.Auth) > MaxAuthLen || (r.Auth != "" && !ValidID(r.Auth)) {
		return fmt.Errorf("bad auth %q", r.Auth)
	}
	if len(r.User) > MaxUserLen || !utf8.ValidString(r.User) {
		return fmt.Errorf("bad user name (at most %d bytes of UTF-8)", MaxUserLen)
	}
	if len(r.Key) > MaxKeyLen || !utf8.ValidString(r.Key) {
		return fmt.Errorf("bad key fingerprint %q", r.Key)
	}
	if len(r.Shared) > MaxDoorLen || !utf8.ValidString(r.Shared) {
		return fmt.Errorf("bad shared door name %q", r.Shared)
	}
	if r.Origin != "" && !validNode(r.Origin) {
		return fmt.Errorf("bad origin node %q", r.Origin)
	}
	if r.Origin != "" && (r.Shared != "" || r.Published) {
		return fmt.Errorf("a grant from node %s cannot be shared by this one", r.Origin)
	}
	return nil
}

// validNode accepts a fleet node or group name: 1-MaxOriginLen of
// [A-Za-z0-9._-], not "." or "..".
func validNode(s string) bool {
	if s == "" || len(s) > MaxOriginLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !idByte(c) && c != '.' {
			return false
		}
	}
	return true
}

// clone returns a copy that shares no memory with r.
func (r Record) clone() Record {
	if r.Open != nil {
		r.Open = append([]knock.Port(nil), r.Open...)
	}
	return r
}
