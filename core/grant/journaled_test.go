package grant

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/journal"
)

// marksAt answers ReadMark from a map of marker paths.
type marksAt map[string]command.Mark

func (m marksAt) ReadMark(marker string) command.Mark { return m[marker] }
func (m marksAt) WaitMark(_ context.Context, marker string, _ time.Time) command.Mark {
	return m[marker]
}
func (marksAt) RemoveMark(string) {}

// The journal's view of a grant uses the daemon's words for its state,
// so sesame grants says the same with and without --state-dir.
func TestFromJournalNamesStatesAsTheDaemon(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := func(id string, deadline time.Duration, f func(*journal.Record)) journal.Record {
		r := journal.Record{ID: id, Door: "ssh", Source: netip.MustParseAddr("192.0.2.1"), StopCmd: "stop",
			Start: t0, Deadline: t0.Add(deadline)}
		if f != nil {
			f(&r)
		}
		return r
	}
	dir := "/state/stops"
	marks := marksAt{
		filepath.Join(dir, "failed.stopped"):  {State: command.Done, Status: 3},
		filepath.Join(dir, "done.stopped"):    {State: command.Done, Status: 0},
		filepath.Join(dir, "running.stopped"): {State: command.Running, Pid: 9},
	}
	revoking := func(r *journal.Record) { r.RevokeStarted = true }
	recs := []journal.Record{
		rec("failed", 6, revoking),
		rec("active", 1, nil),
		rec("starting", 2, func(r *journal.Record) { r.StartPending = true }),
		rec("done", 5, revoking),
		rec("running", 4, revoking),
		rec("lost", 3, revoking),
	}
	want := []struct{ id, state, lastErr string }{
		{"active", "active", ""},
		{"starting", "starting", ""},
		{"lost", "revoking", ""},
		{"running", "revoking", ""},
		{"done", "revoked, not journaled", ""},
		{"failed", "stop failing", "stop command: exit status 3"},
	}
	got := FromJournal(recs, dir, marks)
	if len(got) != len(want) {
		t.Fatalf("got %d grants, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.id || g.State != w.state || g.LastError != w.lastErr {
			t.Errorf("grant %d: %s %q %q, want %s %q %q", i, g.ID, g.State, g.LastError, w.id, w.state, w.lastErr)
		}
	}
	// Every word is one State's String: one vocabulary.
	words := map[string]bool{}
	for s := Starting; s <= Unrecorded; s++ {
		words[s.String()] = true
	}
	for _, g := range got {
		if !words[g.State] {
			t.Errorf("state %q is not a State", g.State)
		}
	}
}
