package eventlog

import (
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
)

// knockdEntry reports whether an entry belongs in knockd's outputs
// (LogFile, syslog): an event (see package event) at Info or above. The
// message text plays no part.
func knockdEntry(level hclog.Level, args []any) (event.Kind, bool) {
	if level < hclog.Info || level == hclog.Off {
		return "", false
	}
	return event.Of(args)
}
