package journal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// state is the set of unrevoked grants a log describes. It is rebuilt by
// replaying frames and updated by the writer after each durable append;
// the Journal's mutex guards the one the writer holds.
type state struct {
	live    map[string]*entry
	nextSeq uint64 // order of Grant records, so replay order survives compaction
	// replays holds the SPA replay digests recorded (with a grant or on
	// their own) and when each expires; compaction drops expired ones.
	replays map[[32]byte]time.Time
	// fleetGroup and fleetRev are the fleet group and the last of its
	// revisions applied (0: none).
	fleetGroup string
	fleetRev   int64
}

type entry struct {
	rec Record
	seq uint64
}

func newState() *state {
	return &state{live: make(map[string]*entry), replays: make(map[[32]byte]time.Time)}
}

// addReplay records r, keeping the later expiry of a digest held twice.
func (s *state) addReplay(r Replay) {
	if r.IsZero() {
		return
	}
	if exp, ok := s.replays[r.Digest]; !ok || r.Expires.After(exp) {
		s.replays[r.Digest] = r.Expires
	}
}

// liveReplays returns the replay digests unexpired at now, soonest
// expiry first (ties by digest, so that compaction writes a stable file).
func (s *state) liveReplays(now time.Time) []Replay {
	out := make([]Replay, 0, len(s.replays))
	for d, exp := range s.replays {
		if now.Before(exp) {
			out = append(out, Replay{Digest: d, Expires: exp})
		}
	}
	slices.SortFunc(out, func(a, b Replay) int {
		if c := a.Expires.Compare(b.Expires); c != 0 {
			return c
		}
		return bytes.Compare(a.Digest[:], b.Digest[:])
	})
	return out
}

// apply replays one good frame. An error means the frame was well framed
// but its payload is unusable or refers to a grant the log does not hold
// (for example one whose Grant frame was lost to corruption); the caller
// logs it and carries on.
func (s *state) apply(t recType, payload []byte) error {
	switch t {
	case typeGrant:
		r, err := decodeGrant(payload)
		if err != nil {
			return fmt.Errorf("bad grant record: %w", err)
		}
		s.put(r)
		s.addReplay(r.Replay)
	case typeReplay:
		var w replayWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad replay record: %w", err)
		}
		r, err := decodeReplay(w)
		if err != nil {
			return fmt.Errorf("bad replay record: %w", err)
		}
		s.addReplay(r)
	case typeExtend:
		var w extendWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad extend record: %w", err)
		}
		if w.Deadline.IsZero() {
			return fmt.Errorf("extend %q: no deadline", w.ID)
		}
		e, err := s.lookup(w.ID)
		if err != nil {
			return fmt.Errorf("extend: %w", err)
		}
		e.rec.Deadline = w.Deadline.UTC()
	case typeRevoking:
		var w revokingWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad revoking record: %w", err)
		}
		e, err := s.lookup(w.ID)
		if err != nil {
			return fmt.Errorf("revoking: %w", err)
		}
		e.rec.RevokeStarted = true
	case typeStarted:
		var w startedWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad started record: %w", err)
		}
		if w.Deadline.IsZero() {
			return fmt.Errorf("started %q: no deadline", w.ID)
		}
		e, err := s.lookup(w.ID)
		if err != nil {
			return fmt.Errorf("started: %w", err)
		}
		e.rec.StartPending = false
		e.rec.Deadline = w.Deadline.UTC()
	case typePublished:
		var w publishedWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad published record: %w", err)
		}
		e, err := s.lookup(w.ID)
		if err != nil {
			return fmt.Errorf("published: %w", err)
		}
		e.rec.Published = true
	case typeFleetRev:
		w, err := decodeFleetRev(payload)
		if err != nil {
			return err
		}
		s.fleetGroup, s.fleetRev = w.Group, w.Rev
	case typeRevoked:
		var w revokedWire
		if err := json.Unmarshal(payload, &w); err != nil {
			return fmt.Errorf("bad revoked record: %w", err)
		}
		if _, err := s.lookup(w.ID); err != nil {
			return fmt.Errorf("revoked: %w", err)
		}
		delete(s.live, w.ID)
	default:
		return fmt.Errorf("unknown record type %d", t)
	}
	return nil
}

// put adds or replaces a grant. A Grant frame for an id that is already
// live replaces it: the writer never produces one, and the later frame is
// the better guess.
func (s *state) put(r Record) {
	s.live[r.ID] = &entry{rec: r, seq: s.nextSeq}
	s.nextSeq++
}

func (s *state) lookup(id string) (*entry, error) {
	e, ok := s.live[id]
	if !ok {
		return nil, fmt.Errorf("grant %q: %w", id, ErrUnknownGrant)
	}
	return e, nil
}

// byAppend returns the live entries in the order their Grant frames were
// appended.
func (s *state) byAppend() []*entry {
	es := make([]*entry, 0, len(s.live))
	for _, e := range s.live {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmpUint(a.seq, b.seq) })
	return es
}

// pending returns copies of the live records ordered by start time, ties
// in append order.
func (s *state) pending() []Record {
	es := s.byAppend()
	slices.SortStableFunc(es, func(a, b *entry) int { return a.rec.Start.Compare(b.rec.Start) })
	out := make([]Record, len(es))
	for i, e := range es {
		out[i] = e.rec.clone()
	}
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// problem is a damaged region of the log.
type problem struct {
	off, len int64
	reason   string
}

// scanResult is what a pass over the whole log found.
type scanResult struct {
	st      *state
	frames  int       // good frames, applied or not
	end     int64     // end of the last good frame: where the next append goes
	skipped []problem // damaged regions before end (resynced past)
	tail    *problem  // damage after end (torn or corrupt tail), nil if none
	notes   []problem // good frames whose payload could not be applied
}

// scan replays a whole log image. It never fails: damage is reported in
// the result. A damaged frame is skipped by searching for the next magic
// at which a good frame starts; if there is none, everything from the
// damage on is the tail.
func scan(data []byte) scanResult {
	res := scanResult{st: newState()}
	off := 0
	for off < len(data) {
		t, payload, n, reason := parseFrame(data[off:])
		if reason != "" {
			next := resync(data, off+1)
			if next < 0 {
				res.tail = &problem{off: int64(off), len: int64(len(data) - off), reason: reason}
				break
			}
			res.skipped = append(res.skipped, problem{off: int64(off), len: int64(next - off), reason: reason})
			off = next
			continue
		}
		if err := res.st.apply(t, payload); err != nil {
			res.notes = append(res.notes, problem{off: int64(off), len: int64(n), reason: err.Error()})
		}
		res.frames++
		off += n
		res.end = int64(off)
	}
	return res
}

// resync returns the offset of the next good frame at or after from, or
// -1.
func resync(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], magic)
		if i < 0 {
			return -1
		}
		at := from + i
		if _, _, _, reason := parseFrame(data[at:]); reason == "" {
			return at
		}
		from = at + 1
	}
	return -1
}
