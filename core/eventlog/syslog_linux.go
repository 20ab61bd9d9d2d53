package eventlog

import (
	"log/syslog"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// dialSyslog connects to the local syslog socket; swapped by tests.
var dialSyslog = func(tag string) (*syslog.Writer, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, tag)
}

// syslogIsJournald reports whether the syslog socket, /dev/log, is
// journald's (systemd links it to /run/systemd/journal/dev-log, also in
// a unit's private /dev): what is sent there lands in the journal.
// Swapped by tests.
var syslogIsJournald = func() bool {
	dev, err := os.Stat("/dev/log")
	if err != nil {
		return false
	}
	j, err := os.Stat("/run/systemd/journal/dev-log")
	return err == nil && os.SameFile(dev, j)
}

// redialEvery bounds how often a missing syslog is looked for again.
const redialEvery = time.Minute

// syslogSink sends knockd's lines to syslog at notice, as knockd does.
// Without a syslog socket it drops lines and tries again at most once a
// minute, so a syslog daemon started later is picked up.
type syslogSink struct {
	tag  string
	now  func() time.Time
	warn func(string, ...any)

	mu       sync.Mutex // guards all following fields
	w        *syslog.Writer
	lastDial time.Time
	closed   bool
	failing  bool // a write failed and that was reported
}

// newSyslogSink always returns a usable sink; the error says the first
// connection failed.
func newSyslogSink(tag string, now func() time.Time, warn func(string, ...any)) (*syslogSink, error) {
	s := &syslogSink{tag: tag, now: now, warn: warn, lastDial: now()}
	w, err := dialSyslog(tag)
	s.w = w
	return s, err
}

// Accept implements hclog.SinkAdapter.
func (s *syslogSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	if _, ok := knockdEntry(level, args); !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.w == nil {
		if now := s.now(); now.Sub(s.lastDial) >= redialEvery {
			s.lastDial = now
			if w, err := dialSyslog(s.tag); err == nil {
				s.w = w
				s.warn("syslog: connected after being unavailable")
			}
		}
		if s.w == nil {
			return
		}
	}
	// log/syslog reconnects once by itself when a write fails.
	err := s.w.Notice(msg)
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.warn("syslog: write failed; later lines may be lost", "error", err)
	case err == nil && s.failing:
		s.failing = false
		s.warn("syslog: writing works again")
	}
}

func (s *syslogSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.w == nil {
		return nil
	}
	return s.w.Close()
}
