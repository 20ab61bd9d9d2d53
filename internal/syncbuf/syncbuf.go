// Package syncbuf is a bytes.Buffer that a writer (a logger, a child
// process) and a reader (a test polling for a line) can share safely.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes; its zero value is ready to use.
type Buffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
