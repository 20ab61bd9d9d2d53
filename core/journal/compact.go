package journal

import (
	"errors"
	"os"
	"path/filepath"
	"time"
)

// crashAt, when set by a test, is asked at each step of a compaction; if
// it returns true the compaction stops there as if the process had died:
// files stay as they are and the Journal drops its descriptors and lock
// without cleaning up. It is nil in production.
var crashAt func(point string) bool

// Compaction steps crashAt is asked about.
const (
	crashTmpPartial = "tmp-partial" // half of the temp file written
	crashTmpSynced  = "tmp-synced"  // temp file complete and synced, not renamed
	crashRenamed    = "renamed"     // renamed over the log, directory not synced
)

var errCrashed = errors.New("simulated crash")

// keptLocked is how many frames a compaction would write at least: the
// live grants and the unexpired replay digests.
func (j *Journal) keptLocked() int {
	n := len(j.st.live) + len(j.st.replays)
	if j.st.fleetGroup != "" {
		n++
	}
	return n
}

// maybeCompactLocked compacts when the log is mostly dead frames. A failed
// compaction is logged and retried only after the log has grown by
// another compactMin frames, so a full disk does not turn every append
// into a rewrite.
func (j *Journal) maybeCompactLocked() {
	if j.frames <= compactMin || j.frames <= compactRatio*j.keptLocked() || j.frames <= j.compactAfter {
		return
	}
	if err := j.compactLocked(); err != nil {
		j.compactAfter = j.frames + compactMin
		j.log.Warn("journal: compaction failed; will retry later", "dir", j.dir, "frames", j.frames, "error", err)
	}
}

// compactLocked rewrites the live grants, the unexpired replay digests
// and the last fleet revision applied into a temp file, syncs it, renames it over the log and syncs
// the directory. A crash at any point leaves either the old log (plus a
// temp file Open removes) or the new one, and both describe the same
// live grants and refuse the same replays. Expired digests are dropped
// from the state only once the new file is the log.
func (j *Journal) compactLocked() (err error) {
	var buf []byte
	frames := 0
	replays := j.st.liveReplays(j.now())
	for _, r := range replays {
		payload, err := marshal(encodeReplay(r))
		if err != nil {
			return err
		}
		buf = appendFrame(buf, typeReplay, payload)
		frames++
	}
	if j.st.fleetGroup != "" {
		payload, err := marshal(fleetRevWire{Group: j.st.fleetGroup, Rev: j.st.fleetRev})
		if err != nil {
			return err
		}
		buf = appendFrame(buf, typeFleetRev, payload)
		frames++
	}
	for _, e := range j.st.byAppend() {
		payload, err := encodeGrant(&e.rec)
		if err != nil {
			return err
		}
		buf = appendFrame(buf, typeGrant, payload)
		frames++
		if e.rec.RevokeStarted {
			payload, err := marshal(revokingWire{ID: e.rec.ID})
			if err != nil {
				return err
			}
			buf = appendFrame(buf, typeRevoking, payload)
			frames++
		}
	}
	tmp := filepath.Join(j.dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return bareErr(err)
	}
	renamed := false
	defer func() {
		if err != nil && !errors.Is(err, errCrashed) && !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if crashAt != nil && crashAt(crashTmpPartial) {
		_, _ = f.Write(buf[:len(buf)/2])
		return j.crashLocked(f)
	}
	if _, err := f.Write(buf); err != nil {
		return bareErr(err)
	}
	if err := f.Sync(); err != nil {
		return bareErr(err)
	}
	if crashAt != nil && crashAt(crashTmpSynced) {
		return j.crashLocked(f)
	}
	if err := os.Rename(tmp, filepath.Join(j.dir, LogName)); err != nil {
		return bareErr(err)
	}
	renamed = true
	// From here the new file is the log: switch to it even if the
	// directory sync fails, and make appends retry that sync first.
	old := j.f
	j.f, j.size, j.frames, j.compactAfter = f, int64(len(buf)), frames, 0
	old.Close()
	j.st.replays = make(map[[32]byte]time.Time, len(replays))
	for _, r := range replays {
		j.st.replays[r.Digest] = r.Expires
	}
	if crashAt != nil && crashAt(crashRenamed) {
		return j.crashLocked(nil)
	}
	if err := syncDir(j.dir); err != nil {
		j.dirUnsynced = true
		return bareErr(err)
	}
	j.log.Debug("journal: compacted", "dir", j.dir, "pending", len(j.st.live), "frames", frames, "bytes", len(buf))
	return nil
}

// crashLocked is the simulated death used by crashAt: drop every
// descriptor (and so the lock) and make the Journal unusable, touching no
// file.
func (j *Journal) crashLocked(extra *os.File) error {
	if extra != nil {
		extra.Close()
	}
	j.f.Close()
	j.lock.Close()
	j.closed = true
	return errCrashed
}
