package fleet

import (
	"fmt"
	"time"
)

// Status is the fleet's connectivity, for STATUS=, `sesame status` and
// the metrics.
type Status struct {
	// Connected is true when the last probe (a quorum read, every
	// ProbeInterval) or watch response came through, false after one
	// failed or before the first.
	Connected bool
	// Revision is the last revision handed to the Consumer (at start:
	// the Store's).
	Revision int64
	// Progress is the revision up to which every change of the group has
	// been seen (events, or etcd's progress notice when there were none).
	Progress int64
	// Head is the cluster's revision at the last probe.
	Head int64
	// LastContact is when etcd last answered.
	LastContact time.Time
	// Snapshots counts full re-lists handed to the Consumer (a start
	// without a revision, a compacted history); Refused counts values
	// that did not parse.
	Snapshots, Refused int
	// Err is the last error, "" once a probe succeeded after it.
	Err string
}

// Lag is how many revisions of the cluster the watch has not confirmed
// yet; 0 when caught up. Revisions are cluster-wide, so writes to other
// keys count until the next progress notice.
func (s Status) Lag() int64 {
	if s.Head > s.Progress {
		return s.Head - s.Progress
	}
	return 0
}

// String is one line for STATUS= and logs.
func (s Status) String() string {
	if s.Connected {
		return fmt.Sprintf("fleet connected, revision %d, lag %d", s.Revision, s.Lag())
	}
	if s.LastContact.IsZero() {
		return fmt.Sprintf("fleet not connected, revision %d: %s", s.Revision, s.Err)
	}
	return fmt.Sprintf("fleet disconnected since %s, revision %d: %s", s.LastContact.Format(time.RFC3339), s.Revision, s.Err)
}

// Status returns the current connectivity.
func (f *Fleet) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// contact records that etcd answered at revision head.
func (f *Fleet) contact(head int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.status.Connected && f.status.Err != "" {
		f.log.Info("connected to etcd again", "revision", head)
	}
	f.status.Connected = true
	f.status.Err = ""
	f.status.LastContact = f.opts.Now()
	f.status.Head = max(f.status.Head, head)
}

// lost records a failure; it logs a warning when the error is new.
func (f *Fleet) lost(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := err.Error()
	if msg != f.status.Err || f.status.Connected {
		f.log.Warn("etcd not reachable; local doors keep working, fleet grants resume when it is", "error", msg)
	}
	f.status.Connected = false
	f.status.Err = msg
}
