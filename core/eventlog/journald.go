package eventlog

import (
	"sync/atomic"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
)

// Swapped by tests: go-systemd's socket path is fixed, so a fake journald
// replaces the calls rather than the socket.
var (
	send    = journal.Send
	enabled = journal.Enabled
)

// journaldSink sends entries to journald with MESSAGE verbatim and the
// key/values as SESAME_* fields. It is called with the intercept logger's
// sink lock held, and also directly by Logger.warn; it keeps no mutable
// state but an atomic flag.
type journaldSink struct {
	ident    string
	level    func() hclog.Level // the root logger's current level
	fallback hclog.Logger       // real stderr when plain stderr is discarded, else nil
	direct   hclog.Logger       // for reporting our own failures
	failing  atomic.Bool        // a send failed and that was reported
}

// Accept implements hclog.SinkAdapter. Sinks receive every level, so the
// level is filtered here.
func (s *journaldSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	if level < s.level() || level == hclog.Off {
		return
	}
	f := fields(args)
	f["SYSLOG_IDENTIFIER"] = s.ident
	// Facility daemon, as knockd's syslog lines had: journald forwards
	// with it to a syslog daemon, whose daemon.* rules keep matching.
	f["SYSLOG_FACILITY"] = "3"
	if name != "" && name != s.ident {
		f["SESAME_LOGGER"] = name
	}
	err := send(msg, priority(level, args), f)
	if err == nil {
		if s.failing.Swap(false) {
			// Say so in the journal too: it has a gap the fallback filled.
			const back = "journald: sending works again; entries in between went to stderr"
			s.direct.Warn(back)
			_ = send(back, journal.PriWarning, map[string]string{"SYSLOG_IDENTIFIER": s.ident})
		}
		return
	}
	if s.fallback != nil {
		s.fallback.Log(level, msg, args...)
	}
	if !s.failing.Swap(true) {
		s.direct.Warn("journald: send failed; entries go to stderr until it works again", "error", err)
		if s.fallback != nil {
			s.fallback.Warn("journald: send failed; entries go to stderr until it works again", "error", err)
		}
	}
}

// priority maps an entry to a syslog priority. Info entries that are
// events (knockd's lines and Sesame's beside them) get notice, the
// priority knockd gives them in syslog, so `journalctl -p notice` shows
// what knockd's log would; other info entries get info. Alarm events (the
// rescue port) are at least warnings: they change what the firewall lets
// through.
func priority(level hclog.Level, args []any) journal.Priority {
	var p journal.Priority
	switch {
	case level >= hclog.Error:
		p = journal.PriErr
	case level == hclog.Warn:
		p = journal.PriWarning
	case level == hclog.Info:
		p = journal.PriInfo
		if _, ok := knockdEntry(level, args); ok {
			p = journal.PriNotice
		}
	default:
		p = journal.PriDebug
	}
	if kind, _ := event.Of(args); kind.Alarm() && p > journal.PriWarning {
		p = journal.PriWarning
	}
	return p
}
