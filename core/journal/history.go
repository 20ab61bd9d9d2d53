package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Kind is the kind of a journal record, as ReadLog reports it.
type Kind string

// Record kinds.
const (
	KindGrant    Kind = "grant"
	KindExtend   Kind = "extend"
	KindStarted  Kind = "started"
	KindRevoking Kind = "revoking"
	KindRevoked  Kind = "revoked"
	KindReplay   Kind = "replay"
	// KindPublished: the fleet confirmed a shared grant.
	KindPublished Kind = "published"
	// KindFleetRevision: fleet changes up to Rev of Group were applied.
	KindFleetRevision Kind = "fleet-revision"
)

// Entry is one record of the log as it was written, for tests and
// post-mortems: what the daemon knew, in order.
type Entry struct {
	Kind  Kind
	ID    string
	Grant Record // KindGrant: the record as granted
	// Deadline is the grant's new deadline (KindExtend, KindStarted).
	Deadline time.Time
	// At is when the start command finished (KindStarted) or the grant
	// was revoked or forgotten (KindRevoked).
	At        time.Time
	Forgotten bool   // KindRevoked by sesame revoke --forget
	Replay    Replay // KindReplay: a digest recorded on its own
	// Group and Rev: KindFleetRevision.
	Group string
	Rev   int64
}

// ReadLog returns every good record in dir's log in the order it was
// written, without taking the lock or changing anything. Damaged frames
// are skipped, as replay skips them. Compaction drops the records of
// revoked grants, so this is the whole history only of a log that was
// never compacted (fewer than about a thousand records); the only errors
// are I/O errors.
func ReadLog(dir string) ([]Entry, error) {
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		return nil, fmt.Errorf("journal: read %s: %w", dir, err)
	}
	var out []Entry
	for off := 0; off < len(data); {
		t, payload, n, reason := parseFrame(data[off:])
		if reason != "" {
			next := resync(data, off+1)
			if next < 0 {
				break
			}
			off = next
			continue
		}
		off += n
		if e, ok := decodeEntry(t, payload); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// decodeEntry decodes one good frame; false when its payload is unusable
// (replay ignores such frames too).
func decodeEntry(t recType, payload []byte) (Entry, bool) {
	switch t {
	case typeGrant:
		r, err := decodeGrant(payload)
		return Entry{Kind: KindGrant, ID: r.ID, Grant: r}, err == nil
	case typeExtend:
		var w extendWire
		err := json.Unmarshal(payload, &w)
		return Entry{Kind: KindExtend, ID: w.ID, Deadline: w.Deadline.UTC()}, err == nil
	case typeStarted:
		var w startedWire
		err := json.Unmarshal(payload, &w)
		return Entry{Kind: KindStarted, ID: w.ID, At: w.At.UTC(), Deadline: w.Deadline.UTC()}, err == nil
	case typeRevoking:
		var w revokingWire
		err := json.Unmarshal(payload, &w)
		return Entry{Kind: KindRevoking, ID: w.ID}, err == nil
	case typeRevoked:
		var w revokedWire
		err := json.Unmarshal(payload, &w)
		return Entry{Kind: KindRevoked, ID: w.ID, At: w.At.UTC(), Forgotten: w.Forgotten}, err == nil
	case typePublished:
		var w publishedWire
		err := json.Unmarshal(payload, &w)
		return Entry{Kind: KindPublished, ID: w.ID}, err == nil
	case typeFleetRev:
		w, err := decodeFleetRev(payload)
		return Entry{Kind: KindFleetRevision, Group: w.Group, Rev: w.Rev}, err == nil
	case typeReplay:
		var w replayWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return Entry{}, false
		}
		r, err := decodeReplay(w)
		return Entry{Kind: KindReplay, Replay: r}, err == nil
	}
	return Entry{}, false
}
