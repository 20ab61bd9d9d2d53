// Package event names what Sesame logs as events: the kinds, each a
// typed constant, and the keys of their fields. Producers (engine, grant,
// command, rescue, the daemon) attach an Event's Args to a log entry;
// sinks (core/eventlog's LogFile, syslog and journald) route on its Kind,
// never on the message text. It logs nothing and imports nothing of
// Sesame's.
package event

import (
	"net/netip"
	"time"
)

// Kind is what an event says happened. Its text is the value of the
// KeyKind field (journald's SESAME_EVENT).
type Kind string

// The kinds. Every kind is one of knockd's log lines or one Sesame adds
// beside them: entries with a Kind, at Info or above, go to the LogFile
// and syslog as knockd writes them.
const (
	// knockd's lines about knocks.
	Stage   Kind = "stage"   // "IP: DOOR: Stage N"
	Open    Kind = "open"    // "IP: DOOR: OPEN SESAME"
	Timeout Kind = "timeout" // "IP: DOOR: sequence timeout (stage N)"

	// knockd's lines about the daemon and its commands.
	Start         Kind = "start"          // "starting up, listening on IFACE"
	Shutdown      Kind = "shutdown"       // "shutting down"
	Reload        Kind = "reload"         // "re-reading config file: PATH"
	Command       Kind = "command"        // "DOOR: running command: CMD"
	CommandFailed Kind = "command-failed" // "DOOR: command returned non-zero status code (N)"
	// Sesame's line after a failed command's: what it printed, quoted.
	CommandOutput Kind = "command-output" // "DOOR: command output (status N): \"...\""

	// A grant's life (package grant; the daemon's reconcile).
	Grant   Kind = "grant"   // applied, or restored in the kernel
	Extend  Kind = "extend"  // a holder's repeat knock moved its deadline
	Refused Kind = "refused" // not applied: rate limit, firewall or start command failed
	Clamp   Kind = "clamp"   // a deadline further than its door's timeout was cut back
	Replay  Kind = "replay"  // resumed from the journal after a restart
	Revoke  Kind = "revoke"  // revoked (stop command, native revoke), or a step of it
	Expire  Kind = "expire"  // its deadline came ("IP: DOOR: command timeout")

	// The rescue port (package rescue): they change what the firewall
	// lets through outside any grant.
	RescueOpen  Kind = "rescue-open"
	RescueClose Kind = "rescue-close"
	// RescueLate: a heartbeat refresh ended more than Rescue_After after
	// the previous one began, so the rescue may have opened in between
	// (a stalled machine), unseen by the daemon's reads.
	RescueLate Kind = "rescue-late"

	// Fleet grants (the daemon's fleet service). A grant received from
	// the group is logged with the grant kinds above and KeyOrigin.
	FleetConnected    Kind = "fleet-connected"    // etcd answers (at start, and again after a loss)
	FleetDisconnected Kind = "fleet-disconnected" // etcd stopped answering; local doors keep working
	FleetPublished    Kind = "fleet-published"    // the group holds a grant made here (or its extension)
	FleetRevoked      Kind = "fleet-revoked"      // a grant was revoked in the group
	FleetRefused      Kind = "fleet-refused"      // a grant from the group was refused (bad value, unknown door, ports the door does not open)
)

// String returns the kind's text.
func (k Kind) String() string { return string(k) }

// Alarm reports whether k changes what the firewall lets through outside
// the grants (the rescue port): journald gets such entries at warning
// priority or higher.
func (k Kind) Alarm() bool { return k == RescueOpen || k == RescueClose }

// Keys of the fields every sink may index; journald gets them as
// SESAME_EVENT, SESAME_DOOR, SESAME_SOURCE, SESAME_GRANT_ID,
// SESAME_DEADLINE, SESAME_STAGE, SESAME_AUTH, SESAME_USER, SESAME_KEY,
// SESAME_REASON and SESAME_ORIGIN.
const (
	KeyKind     = "event"
	KeyDoor     = "door"
	KeySource   = "source"
	KeyGrantID  = "grant_id"
	KeyDeadline = "deadline"
	KeyStage    = "stage"
	KeyAuth     = "auth"   // how a grant was asked for: fwknop, ssh (absent for knocks)
	KeyUser     = "user"   // who asked: an SPA packet's user name, an SSH key's comment
	KeyKey      = "key"    // the SSH key's SHA-256 fingerprint
	KeyReason   = "reason" // why a packet or grant was refused
	KeyOrigin   = "origin" // the fleet node a grant was made on
)

// Auth methods (KeyAuth's values).
const (
	AuthFwknop = "fwknop" // an fwknop SPA packet
	AuthSSH    = "ssh"    // a knock signed with an SSH key
)

// Keys of fields that sinks other than journald route on: the metrics
// sink (internal/metrics) counts events by them. Producers must use them
// as documented here for their events to be counted.
const (
	// KeySuppressed is on an entry that stands for N entries of its kind
	// that a limiter (core/loglimit) held back: N, as a uint64. A sink
	// that counts events counts N for it, 1 for any other entry.
	KeySuppressed = "suppressed"
	// KeyOutcome is on an Open entry: what grant.Manager.Open did
	// (grant.Outcome's text: "granted", "extended", "ran start"...).
	KeyOutcome = "outcome"
	// KeyStatus is on the Revoke entry that ends a grant: "done" (its stop
	// and native revoke succeeded and the journal has it) or "forgotten"
	// (an admin ended it); KeyReason then says why it was revoked
	// (expire, admin, reload, refused, replay, forgotten).
	KeyStatus = "status"
	// KeyAttempt is on an Error-level Revoke entry that reports a failed
	// attempt of a stop command or native revoke (1, 2...).
	KeyAttempt = "attempt"
)

// The metrics sink also routes on KeyAuth and KeyReason (above): a
// Refused entry with KeyAuth is a refused SPA or SSH knock, and its
// KeyReason the verifier's reason ("bad HMAC", "stale", "unknown-key"...);
// a Refused entry without KeyAuth is a grant refused (rate limit,
// journal, start command marker).

// Event is one event with its common fields; zero fields are left out.
type Event struct {
	Kind     Kind
	Door     string
	Source   netip.Addr
	GrantID  string
	Deadline time.Time // logged in UTC, RFC 3339 with nanoseconds
	// Auth, User and Key say who asked for an SPA grant, and how.
	Auth, User, Key string
}

// Args returns e as hclog key/values (kind, door, source, grant ID,
// deadline, auth, user, key, in that order) followed by extra, more
// key/values.
func (e Event) Args(extra ...any) []any {
	args := make([]any, 0, 16+len(extra))
	args = append(args, KeyKind, e.Kind)
	if e.Door != "" {
		args = append(args, KeyDoor, e.Door)
	}
	if e.Source.IsValid() {
		args = append(args, KeySource, e.Source.String())
	}
	if e.GrantID != "" {
		args = append(args, KeyGrantID, e.GrantID)
	}
	if !e.Deadline.IsZero() {
		args = append(args, KeyDeadline, e.Deadline.UTC().Format(time.RFC3339Nano))
	}
	if e.Auth != "" {
		args = append(args, KeyAuth, e.Auth)
	}
	if e.Auth != "" || e.User != "" {
		// An SPA user name may be empty; the field says so.
		args = append(args, KeyUser, e.User)
	}
	if e.Key != "" {
		args = append(args, KeyKey, e.Key)
	}
	return append(args, extra...)
}

// Of returns the Kind among hclog key/values: the value of the first
// KeyKind key, when it is a Kind. A KeyKind key with any other value
// (a plain string) is no event.
func Of(args []any) (Kind, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == KeyKind {
			kind, ok := args[i+1].(Kind)
			return kind, ok
		}
	}
	return "", false
}
