package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// File names inside the state directory.
const (
	LogName  = "grants.log"
	tmpName  = "grants.log.tmp"
	lockName = "lock"
)

// Compaction policy: rewrite when the file holds more than compactMin
// frames and more than compactRatio frames per live grant.
const (
	compactMin   = 1024
	compactRatio = 4
)

// Journal is an open, locked journal. Its methods are safe for concurrent
// use; appends are serialised.
type Journal struct {
	dir string
	log hclog.Logger
	now func() time.Time // when replay digests expire; time.Now, tests swap it

	mu sync.Mutex // guards all following fields
	// f is grants.log opened read-write; appends are positional writes at
	// size, so a failed append is undone by truncating back to size.
	f    *os.File
	lock *os.File // holds the flock on DIR/lock
	size int64    // end of the last durable frame
	// dirty means a failed append may have left bytes after size that a
	// truncate could not remove; the next append retries the truncate.
	dirty bool
	// dirUnsynced means a rename into the directory is not known to be
	// durable yet; appends retry the directory fsync first, so nothing is
	// acknowledged into a file a crash could unname.
	dirUnsynced  bool
	frames       int // frames in the current file
	compactAfter int // do not try compaction again until frames exceeds this
	st           *state
	closed       bool
}

// Open opens the journal in dir, creating dir (mode 0700) and the log if
// missing. It takes an exclusive lock on DIR/lock so two daemons never
// share a journal (another holder gives an error wrapping ErrLocked),
// removes an unfinished compaction, replays the log, cuts off a torn or
// corrupt tail (logged with offset and reason) and rewrites the log when
// damage was found before its end. A nil log discards messages.
func Open(dir string, log hclog.Logger) (*Journal, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := mkdirDurable(dir); err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	j := &Journal{dir: dir, log: log, lock: lock, now: time.Now}
	if err := j.load(); err != nil {
		j.f.Close() // nil-safe: (*os.File).Close on nil returns ErrInvalid
		lock.Close()
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	log.Debug("journal opened", "dir", dir, "pending", len(j.st.live), "frames", j.frames, "bytes", j.size)
	return j, nil
}

// load replays the log into j; it runs before j is shared.
func (j *Journal) load() error {
	tmp := filepath.Join(j.dir, tmpName)
	if err := os.Remove(tmp); err == nil {
		j.log.Warn("journal: removed an unfinished compaction", "path", tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	path := filepath.Join(j.dir, LogName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			err = syncDir(j.dir)
		}
	}
	if err != nil {
		return err
	}
	j.f = f
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	res := scan(data)
	for _, p := range res.skipped {
		j.log.Error("journal: skipped damaged records", "path", path, "offset", p.off, "bytes", p.len, "reason", p.reason)
	}
	for _, p := range res.notes {
		j.log.Warn("journal: ignored record", "path", path, "offset", p.off, "reason", p.reason)
	}
	j.st, j.frames, j.size = res.st, res.frames, res.end
	if p := res.tail; p != nil {
		j.log.Warn("journal: cutting off damaged tail", "path", path, "offset", p.off, "bytes", p.len, "reason", p.reason)
		if err := f.Truncate(res.end); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if len(res.skipped) > 0 {
		// Rewrite now so the damage is gone and every later reader agrees.
		// If that fails (a full disk) the log still replays the same way,
		// so carry on and let a later compaction clean up.
		if err := j.compactLocked(); errors.Is(err, errCrashed) {
			return err
		} else if err != nil {
			j.log.Warn("journal: cannot rewrite damaged log; continuing with it", "path", path, "error", err)
		}
	}
	return nil
}

// Pending returns copies of the unrevoked grants, ordered by start time
// (ties in the order they were granted). After Close it returns nil.
func (j *Journal) Pending() []Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	return j.st.pending()
}

// Grant journals a new grant. It returns after the record is on disk; on
// error nothing was recorded (and the caller must not apply the grant on
// the promise of a later revoke).
func (j *Journal) Grant(r Record) error {
	r = r.clone()
	r.RevokeStarted = false
	r.Start, r.Deadline = r.Start.UTC(), r.Deadline.UTC()
	if err := r.validate(); err != nil {
		return fmt.Errorf("journal: grant %s: %w", r.ID, err)
	}
	payload, err := encodeGrant(&r)
	if err != nil {
		return fmt.Errorf("journal: grant %s: %w", r.ID, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return fmt.Errorf("journal: grant %s: %w", r.ID, err)
	}
	if _, ok := j.st.live[r.ID]; ok {
		return fmt.Errorf("journal: grant %s: %w", r.ID, ErrDuplicate)
	}
	if err := j.appendLocked(typeGrant, payload); err != nil {
		return fmt.Errorf("journal: append grant %s: %w", r.ID, err)
	}
	j.st.put(r)
	j.st.addReplay(r.Replay)
	j.maybeCompactLocked()
	return nil
}

// Replay durably records an accepted SPA packet's digest on its own (for
// a packet whose digest no Grant record carries: one that extended a
// grant, or was refused after it verified). The journal keeps it until
// it expires (see Replays).
func (j *Journal) Replay(r Replay) error {
	if r.IsZero() {
		return fmt.Errorf("journal: replay: no expiry")
	}
	r.Expires = r.Expires.UTC()
	payload, err := marshal(encodeReplay(r))
	if err != nil {
		return fmt.Errorf("journal: replay: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return fmt.Errorf("journal: replay: %w", err)
	}
	if err := j.appendLocked(typeReplay, payload); err != nil {
		return fmt.Errorf("journal: append replay: %w", err)
	}
	j.st.addReplay(r)
	j.maybeCompactLocked()
	return nil
}

// Replays returns the SPA replay digests recorded (in Grant records or
// by Replay) that have not expired, also those of grants since revoked:
// a packet stays refused as a replay for as long as it could be
// accepted, across restarts and reboots. After Close it returns nil.
func (j *Journal) Replays() []Replay {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	return j.st.liveReplays(j.now())
}

// Extend durably moves a live grant's deadline.
func (j *Journal) Extend(id string, deadline time.Time) error {
	if deadline.IsZero() {
		return fmt.Errorf("journal: extend %s: zero deadline", id)
	}
	deadline = deadline.UTC()
	return j.update(typeExtend, id, extendWire{ID: id, Deadline: deadline}, func(e *entry) {
		e.rec.Deadline = deadline
	})
}

// Started durably records that a grant's start command finished at at,
// and that the grant's deadline is now deadline (a deadline runs from the
// end of the start command). It clears Record.StartPending.
func (j *Journal) Started(id string, at, deadline time.Time) error {
	if deadline.IsZero() || at.IsZero() {
		return fmt.Errorf("journal: started %s: zero time", id)
	}
	deadline = deadline.UTC()
	return j.update(typeStarted, id, startedWire{ID: id, At: at.UTC(), Deadline: deadline}, func(e *entry) {
		e.rec.StartPending = false
		e.rec.Deadline = deadline
	})
}

// Revoking durably records that the stop for a live grant is about to run,
// so a replay after a crash knows it may have run (Record.RevokeStarted).
func (j *Journal) Revoking(id string) error {
	return j.update(typeRevoking, id, revokingWire{ID: id}, func(e *entry) {
		e.rec.RevokeStarted = true
	})
}

// Revoked durably records that a grant's stop ran; the grant leaves
// Pending. It may trigger a compaction, whose failure is logged, not
// returned (the revocation itself is durable).
func (j *Journal) Revoked(id string, at time.Time) error {
	return j.update(typeRevoked, id, revokedWire{ID: id, At: at.UTC()}, func(*entry) {
		delete(j.st.live, id)
	})
}

// Forgotten durably ends a grant whose stop never succeeded, on an
// admin's word (sesame revoke --forget): like Revoked, the grant leaves
// Pending; the record says it was forgotten, not revoked.
func (j *Journal) Forgotten(id string, at time.Time) error {
	return j.update(typeRevoked, id, revokedWire{ID: id, At: at.UTC(), Forgotten: true}, func(*entry) {
		delete(j.st.live, id)
	})
}

// Published durably records that the fleet holds the shared grant id
// (Record.Published): a restart does not publish it again.
func (j *Journal) Published(id string) error {
	return j.update(typePublished, id, publishedWire{ID: id}, func(e *entry) {
		e.rec.Published = true
	})
}

// SetFleetRevision durably records that every change of fleet group
// group up to revision rev has been applied; the record survives
// compaction. Recording the revision already held writes nothing.
func (j *Journal) SetFleetRevision(group string, rev int64) error {
	if !validNode(group) || rev < 0 {
		return fmt.Errorf("journal: fleet revision: bad group %q or revision %d", group, rev)
	}
	payload, err := marshal(fleetRevWire{Group: group, Rev: rev})
	if err != nil {
		return fmt.Errorf("journal: fleet revision: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return fmt.Errorf("journal: fleet revision: %w", err)
	}
	if j.st.fleetGroup == group && j.st.fleetRev == rev {
		return nil
	}
	if err := j.appendLocked(typeFleetRev, payload); err != nil {
		return fmt.Errorf("journal: append fleet revision: %w", err)
	}
	j.st.fleetGroup, j.st.fleetRev = group, rev
	j.maybeCompactLocked()
	return nil
}

// FleetRevision returns the last revision of fleet group group recorded
// by SetFleetRevision; 0 when none was, or when the journal's revision
// belongs to another group (its numbers mean nothing to this one).
func (j *Journal) FleetRevision(group string) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || j.st.fleetGroup != group {
		return 0
	}
	return j.st.fleetRev
}

// update appends one frame about a live grant and, once it is durable,
// applies change to the in-memory state.
func (j *Journal) update(t recType, id string, w any, change func(*entry)) error {
	payload, err := marshal(w)
	if err != nil {
		return fmt.Errorf("journal: %s %s: %w", t, id, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return fmt.Errorf("journal: %s %s: %w", t, id, err)
	}
	e, ok := j.st.live[id]
	if !ok {
		return fmt.Errorf("journal: %s %s: %w", t, id, ErrUnknownGrant)
	}
	if err := j.appendLocked(t, payload); err != nil {
		return fmt.Errorf("journal: append %s %s: %w", t, id, err)
	}
	change(e)
	j.maybeCompactLocked()
	return nil
}

func (j *Journal) usableLocked() error {
	if j.closed {
		return ErrClosed
	}
	return nil
}

// appendLocked writes one frame at the end of the log and syncs it. On
// failure the file is cut back to its last durable frame, so the next
// append does not sit behind a partial one; the error is the bare errno
// where there is one ("no space left on device").
func (j *Journal) appendLocked(t recType, payload []byte) error {
	if j.dirUnsynced {
		if err := syncDir(j.dir); err != nil {
			return bareErr(err)
		}
		j.dirUnsynced = false
	}
	if j.dirty {
		if err := j.f.Truncate(j.size); err != nil {
			return bareErr(err)
		}
		j.dirty = false
	}
	buf := appendFrame(make([]byte, 0, headerLen+len(payload)), t, payload)
	_, err := j.f.WriteAt(buf, j.size)
	if err == nil {
		err = datasync(j.f)
	}
	if err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			j.dirty = true
			j.log.Error("journal: cannot cut back a failed append", "path", j.f.Name(), "offset", j.size, "error", terr)
		}
		return bareErr(err)
	}
	j.size += int64(len(buf))
	j.frames++
	return nil
}

// Close releases the file and the lock. It is safe to call more than
// once; later calls return nil.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.f.Close()
	if lerr := j.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("journal: close %s: %w", j.dir, err)
	}
	return nil
}

// bareErr strips *os.PathError and *os.SyscallError wrappers down to the
// errno, so messages read "journal: append grant ID: no space left on
// device" rather than repeating the path; errors.Is still works.
func bareErr(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// mkdirDurable creates dir and any missing parents with mode 0700 and
// fsyncs the parent of each directory it created, so a grant journaled
// right after the first start does not vanish with an unsynced directory
// entry.
func mkdirDurable(dir string) error {
	dir = filepath.Clean(dir)
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory so names created or renamed in it survive a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
