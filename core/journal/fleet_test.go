package journal

import (
	"strings"
	"testing"
)

// Fleet grants: a shared grant's published flag, a received grant's
// origin and the last fleet revision applied survive a reopen and a
// compaction, and the revision belongs to its group only.
func TestFleetRecords(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	shared, unconfirmed, received := rec(1), rec(2), rec(3)
	shared.Shared, unconfirmed.Shared = "ssh", "ssh"
	received.Origin = "bastion-1"
	for _, r := range []Record{shared, unconfirmed, received} {
		mustGrant(t, j, r)
	}
	if err := j.Published(shared.ID); err != nil {
		t.Fatal(err)
	}
	if err := j.Published("nope"); err == nil {
		t.Fatal("Published of an unknown grant: no error")
	}
	if got := j.FleetRevision("g"); got != 0 {
		t.Fatalf("FleetRevision before any: %d", got)
	}
	for _, rev := range []int64{7, 9, 9} {
		if err := j.SetFleetRevision("g", rev); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, j *Journal) {
		t.Helper()
		if got := j.FleetRevision("g"); got != 9 {
			t.Errorf("%s: FleetRevision(g) = %d, want 9", what, got)
		}
		if got := j.FleetRevision("other"); got != 0 {
			t.Errorf("%s: FleetRevision(other) = %d, want 0 (another group's number)", what, got)
		}
		byID := map[string]Record{}
		for _, r := range j.Pending() {
			byID[r.ID] = r
		}
		if r := byID[shared.ID]; r.Shared != "ssh" || !r.Published {
			t.Errorf("%s: shared grant %+v, want shared as ssh, published", what, r)
		}
		if r := byID[unconfirmed.ID]; r.Shared != "ssh" || r.Published {
			t.Errorf("%s: unconfirmed grant %+v, want shared as ssh, not published", what, r)
		}
		if r := byID[received.ID]; r.Origin != "bastion-1" || r.Shared != "" {
			t.Errorf("%s: received grant %+v, want origin bastion-1", what, r)
		}
	}
	check("open", j)
	j.Close()
	j = mustOpen(t, dir)
	check("reopened", j)
	j.mu.Lock()
	err := j.compactLocked()
	j.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = mustOpen(t, dir)
	check("compacted", j)
	defer j.Close()

	// The history shows both kinds; a second identical revision wrote
	// nothing.
	dir2 := t.TempDir()
	j2 := mustOpen(t, dir2)
	mustGrant(t, j2, shared)
	j2.Published(shared.ID)
	j2.SetFleetRevision("g", 5)
	j2.SetFleetRevision("g", 5)
	j2.Close()
	es, err := ReadLog(dir2)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range es {
		kinds = append(kinds, string(e.Kind))
	}
	if got := strings.Join(kinds, ","); got != "grant,published,fleet-revision" {
		t.Fatalf("history %s", got)
	}
	if e := es[2]; e.Group != "g" || e.Rev != 5 {
		t.Fatalf("fleet revision entry %+v", e)
	}
}

func TestFleetRecordRefusals(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	defer j.Close()
	bad := rec(1)
	bad.Origin = "no/slash"
	if err := j.Grant(bad); err == nil {
		t.Error("origin with a slash accepted")
	}
	both := rec(2)
	both.Origin, both.Shared = "a", "ssh"
	if err := j.Grant(both); err == nil {
		t.Error("a received grant that is also shared accepted")
	}
	for _, c := range []struct {
		group string
		rev   int64
	}{{"", 1}, {"g/x", 1}, {"g", -1}} {
		if err := j.SetFleetRevision(c.group, c.rev); err == nil {
			t.Errorf("SetFleetRevision(%q, %d) accepted", c.group, c.rev)
		}
	}
}
