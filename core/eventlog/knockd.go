package eventlog

import (
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Keys with a fixed meaning; journald gets them as SESAME_EVENT,
// SESAME_DOOR, SESAME_SOURCE, SESAME_GRANT_ID and SESAME_DEADLINE.
const (
	KeyEvent    = "event"
	KeyDoor     = "door"
	KeySource   = "source"
	KeyGrantID  = "grant_id"
	KeyDeadline = "deadline"
)

// Values of KeyEvent.
const (
	EventStage       = "stage"
	EventOpen        = "open"
	EventGrant       = "grant"
	EventExtend      = "extend"
	EventRevoke      = "revoke"
	EventExpire      = "expire"
	EventTimeout     = "timeout"
	EventReplay      = "replay"
	EventRescueOpen  = "rescue-open"
	EventRescueClose = "rescue-close"
)

// IsKnockdLine reports whether a message without an event key is one of
// knockd's own plain log lines, which go to the LogFile and syslog as
// knockd writes them:
//
//	starting up, listening on IFACE
//	shutting down
//	re-reading config file: PATH
//	DOOR: running command: CMD
//	DOOR: command returned non-zero status code (N)
//	IP: DOOR: command timeout
func IsKnockdLine(msg string) bool {
	switch {
	case msg == "shutting down",
		strings.HasPrefix(msg, "starting up, listening on "),
		strings.HasPrefix(msg, "re-reading config file: "),
		strings.Contains(msg, ": running command: "),
		strings.Contains(msg, ": command returned non-zero status code ("),
		strings.HasSuffix(msg, ": command timeout"):
		return true
	}
	return false
}

// knockdEntry reports whether an entry belongs in knockd's outputs
// (LogFile, syslog) and returns its event ("" for plain lines).
func knockdEntry(level hclog.Level, msg string, args []any) (event string, ok bool) {
	if level < hclog.Info || level == hclog.Off {
		return "", false
	}
	if ev, found := eventOf(args); found {
		return ev, true
	}
	return "", IsKnockdLine(msg)
}

// eventOf finds the event key's value among key/value args.
func eventOf(args []any) (string, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == KeyEvent {
			return formatValue(args[i+1]), true
		}
	}
	return "", false
}
