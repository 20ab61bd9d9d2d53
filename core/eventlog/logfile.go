package eventlog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fileSink writes knockd's LogFile: knock events and knockd's plain lines
// as "[YYYY-MM-DD HH:MM] MESSAGE", one write per line so nothing sits in
// a buffer when the daemon dies.
type fileSink struct {
	path string
	now  func() time.Time
	warn func(string, ...any)

	mu      sync.Mutex // guards all following fields
	f       *os.File   // nil after close
	closed  bool
	failing bool // a write failed and that was reported
}

func newFileSink(path string, now func() time.Time, warn func(string, ...any)) (*fileSink, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &fileSink{path: path, now: now, warn: warn, f: f}, nil
}

// openLogFile opens the LogFile for appending as knockd's fopen(path,
// "a") does, but creates it 0600 (it names who knocked from where) and
// never through a symlink: whoever could plant one in the log directory
// would choose which file root appends to.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("open log file %s: is a symbolic link: name the file itself", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// knockdLine formats one LogFile line. A newline in the message would
// forge a second entry for whoever parses the file, so it is escaped.
func knockdLine(t time.Time, msg string) string {
	msg = strings.ReplaceAll(msg, "\n", `\n`)
	return fmt.Sprintf("[%04d-%02d-%02d %02d:%02d] %s\n", t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), msg)
}

// Accept implements hclog.SinkAdapter.
func (s *fileSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	if _, ok := knockdEntry(level, args); !ok {
		return
	}
	line := knockdLine(s.now(), msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return
	}
	_, err := s.f.WriteString(line)
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.warn("log file: write failed; later lines may be lost", "path", s.path, "error", err)
	case err == nil && s.failing:
		s.failing = false
		s.warn("log file: writing works again", "path", s.path)
	}
}

// reopen swaps in a freshly opened file at the same path; after close it
// does nothing.
func (s *fileSink) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	f, err := openLogFile(s.path)
	if err != nil {
		return err
	}
	old := s.f
	s.f = f
	return old.Close()
}

func (s *fileSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.f.Close()
	s.f = nil
	return err
}
