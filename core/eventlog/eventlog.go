// Package eventlog builds Sesame's one hclog logger and fans its entries
// out to the sinks an operator asked for: stderr, journald (with
// structured SESAME_* fields), knockd's LogFile format and syslog. It
// owns the formats and which entry goes where; it does not decide what is
// logged or when to reopen files (the caller calls Reopen on SIGHUP).
//
// Events are logged with knockd's wording as the message and the Args of
// an event.Event; the sinks route on its Kind, never on the message text.
// For example
//
//	ev := event.Event{Kind: event.Stage, Door: "ssh", Source: src}
//	log.Info("10.0.0.2: ssh: Stage 1", ev.Args(event.KeyStage, 1)...)
package eventlog

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Journald says whether to send entries to journald.
type Journald int

const (
	// JournaldAuto sends to journald when its socket is reachable.
	JournaldAuto Journald = iota
	// JournaldOff never sends to journald (tests).
	JournaldOff
)

// Options configure New. The zero value logs at Info to os.Stderr and to
// journald when it is reachable.
type Options struct {
	// Name is the logger's name and the syslog/journald identifier;
	// "" means "sesamed".
	Name string
	// Level filters stderr and journald; hclog.NoLevel means Info. The
	// LogFile and syslog sinks take knockd's lines at Info and above
	// whatever the level, as knockd writes them whatever its verbosity.
	Level hclog.Level
	// Stderr receives hclog's text output; nil means os.Stderr. When it
	// is the journal's stream (JOURNAL_STREAM names it) and the journald
	// sink is active, its output is discarded to avoid duplicates.
	Stderr   io.Writer
	Journald Journald
	// LogFile is knockd's LogFile: "" for none.
	LogFile string
	// UseSyslog sends knockd's lines to syslog (facility daemon, notice),
	// unless the journald sink is active and the syslog socket is
	// journald's (systemd's /dev/log): every line would reach the journal
	// twice, so it is skipped, with a notice. journald passes its entries
	// on to a syslog daemon when one is set up (ForwardToSyslog=), with
	// facility daemon (SYSLOG_FACILITY=3), as knockd's lines went.
	UseSyslog bool
	// Now is the clock for LogFile timestamps; nil means time.Now. Stamps
	// are printed in the location of the time it returns.
	Now func() time.Time
}

// Logger is the daemon's logger: use it (or its Named/With children) as
// an hclog.Logger. Reopen and Close manage the files behind it.
type Logger struct {
	hclog.InterceptLogger

	journald *journaldSink // nil when not sending to journald
	file     *fileSink     // nil without a LogFile
	syslog   *syslogSink   // nil without UseSyslog
	// direct logs the package's own warnings without going through the
	// sinks, which may be what is failing (and whose lock may be held).
	direct hclog.Logger

	closeOnce sync.Once
}

// New builds the logger and opens its sinks. Outcomes: an error when the
// LogFile cannot be opened; a missing journald or syslog socket is not
// one (syslog's is a warning).
func New(opts Options) (*Logger, error) {
	if opts.Name == "" {
		opts.Name = "sesamed"
	}
	if opts.Level == hclog.NoLevel {
		opts.Level = hclog.Info
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Logger{}
	var warnings []string

	useJournald := opts.Journald == JournaldAuto && enabled()
	out := opts.Stderr
	var fallback hclog.Logger
	if useJournald {
		stream, err := isJournalStream(opts.Stderr)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot tell whether stderr is the journal: %v", err))
		}
		if stream {
			// Entries would reach journald twice. If a send fails, the
			// sink falls back to the real stderr, which still ends up in
			// the journal.
			out = io.Discard
			fallback = hclog.New(&hclog.LoggerOptions{Name: opts.Name, Level: hclog.Trace, Output: opts.Stderr})
		}
	}
	l.InterceptLogger = hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   opts.Name,
		Level:  opts.Level,
		Output: out,
	})
	l.direct = hclog.New(&hclog.LoggerOptions{Name: opts.Name, Level: hclog.Warn, Output: out})
	level := l.InterceptLogger.GetLevel // follows SetLevel on the root

	if useJournald {
		l.journald = &journaldSink{ident: opts.Name, level: level, fallback: fallback, direct: l.direct}
		l.InterceptLogger.RegisterSink(l.journald)
	}
	if opts.LogFile != "" {
		f, err := newFileSink(opts.LogFile, opts.Now, l.warn)
		if err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
		l.file = f
		l.InterceptLogger.RegisterSink(f)
	}
	var notices []string
	switch {
	case !opts.UseSyslog:
	case useJournald && syslogIsJournald():
		notices = append(notices, "UseSyslog: /dev/log is journald's socket, which gets every entry already: "+
			"not sending knockd's lines there a second time (journald passes them on to a syslog daemon, facility daemon, when one is set up)")
	default:
		s, err := newSyslogSink(opts.Name, opts.Now, l.warn)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("syslog unavailable, continuing without it until it appears: %v", err))
		}
		l.syslog = s
		l.InterceptLogger.RegisterSink(s)
	}
	for _, w := range warnings {
		l.warn(w)
	}
	for _, n := range notices {
		l.Info(n)
	}
	return l, nil
}

// warn reports a problem of the logging machinery itself on stderr and
// journald, bypassing the registered sinks (it may run inside one).
func (l *Logger) warn(msg string, args ...any) {
	l.direct.Warn(msg, args...)
	if l.journald != nil {
		l.journald.Accept(l.direct.Name(), hclog.Warn, msg, args...)
	}
}

// JournaldActive reports whether entries are sent to journald.
func (l *Logger) JournaldActive() bool { return l.journald != nil }

// Reopen reopens the LogFile (after logrotate moved it); on error the old
// file stays in use. Without a LogFile it does nothing.
func (l *Logger) Reopen() error {
	if l.file == nil {
		return nil
	}
	if err := l.file.reopen(); err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	return nil
}

// Close closes the LogFile and the syslog connection. Entries logged
// afterwards still go to stderr and journald. It is safe to call twice.
func (l *Logger) Close() error {
	var err error
	l.closeOnce.Do(func() {
		if l.file != nil {
			err = l.file.close()
		}
		if l.syslog != nil {
			if serr := l.syslog.close(); err == nil {
				err = serr
			}
		}
	})
	if err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	return nil
}
