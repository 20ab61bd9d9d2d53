// Package onetime owns knockd's one-time sequence files: each line is a
// sequence that opens its door once, after which the line is commented
// out with a '#' written over its first byte (knockd's format, so files
// are interchangeable). Unlike knockd, the line marked is always the one
// that was used, the write is synced before the door moves on, and
// running out is a state, not a crash.
package onetime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/sesame-knock/sesame/core/knock"
)

// ErrExhausted means the file has no unused sequence left.
var ErrExhausted = errors.New("no more sequences left")

// File is an open one-time sequence file. It is not safe for concurrent
// use; the engine goroutine owns it.
type File struct {
	path string
	f    *os.File
	cur  []knock.Port
	off  int64 // byte offset of the current sequence's line
	line int   // its line number, for logs
	// Skipped lists lines that are neither comments nor sequences, found
	// by the last read; they are left alone.
	Skipped []string
}

// Open opens path read-write (a file Sesame cannot mark is an error:
// a sequence that cannot be used up is not one-time) and reads the
// first unused sequence. When there is none it returns the File and
// ErrExhausted.
func Open(path string) (*File, error) {
	// Not through a symlink: whoever can swap the link would choose which
	// file root writes '#' into.
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("one-time sequences %s: is a symbolic link: name the file itself", path)
	}
	if err != nil {
		return nil, fmt.Errorf("one-time sequences: %w", err)
	}
	o := &File{path: path, f: f}
	if err := o.next(0, 0); err != nil {
		return o, err
	}
	return o, nil
}

// Path returns the file's name.
func (o *File) Path() string { return o.path }

// Current returns the sequence that opens the door now, or nil when
// the file is exhausted.
func (o *File) Current() []knock.Port { return o.cur }

// Line is the line number of the current sequence.
func (o *File) Line() int { return o.line }

// Consume marks the current sequence used, syncs the file, and moves to
// the next one. It returns ErrExhausted when none is left; the door must
// then be disabled.
func (o *File) Consume() error {
	if o.cur == nil {
		return ErrExhausted
	}
	if _, err := o.f.WriteAt([]byte{'#'}, o.off); err != nil {
		return fmt.Errorf("one-time sequences %s:%d: mark used: %w", o.path, o.line, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("one-time sequences %s: sync: %w", o.path, err)
	}
	return o.next(o.off, o.line-1)
}

// next scans from offset from, the start of line line+1, for the first
// line that parses as a sequence, remembering where that line starts.
// Starting where the used line is, not at the top, keeps a rotation's
// cost independent of how many sequences were used before.
func (o *File) next(from int64, line int) error {
	o.cur, o.Skipped = nil, nil
	if _, err := o.f.Seek(from, io.SeekStart); err != nil {
		return fmt.Errorf("one-time sequences %s: %w", o.path, err)
	}
	r := bufio.NewReader(o.f)
	off := from
	for {
		text, err := r.ReadString('\n')
		if len(text) > 0 {
			line++
			start := off
			off += int64(len(text))
			t := strings.TrimSpace(text)
			if t != "" && t[0] != '#' {
				seq, perr := knock.ParseSequence(t)
				if perr == nil && len(seq) > 0 {
					o.cur, o.off, o.line = seq, start, line
					return nil
				}
				o.Skipped = append(o.Skipped, fmt.Sprintf("%s:%d: %v", o.path, line, perr))
			}
		}
		if err == io.EOF {
			return ErrExhausted
		}
		if err != nil {
			return fmt.Errorf("one-time sequences %s: %w", o.path, err)
		}
	}
}

// Close closes the file; safe to call twice.
func (o *File) Close() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}
