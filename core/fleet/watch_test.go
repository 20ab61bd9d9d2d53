package fleet

import (
	"context"
	"testing"
	"time"
)

// A node does not get its own grants back as puts, refuses values that
// do not parse, and ends a grant whose value is replaced by one that
// does not.
func TestWatchOwnAndBadValues(t *testing.T) {
	c := startCluster(t, 1)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	b := startMember(t, config("g", "b", c.Endpoints()), 0, Options{})
	admin := c.Client(t)
	ctx := ctxT(t)
	// b's first snapshot hands over the group as it is, b's own grants
	// included: let it happen before anything is written, so that what
	// follows comes as changes.
	waitStatus(t, b, "b's first snapshot", func(s Status) bool { return s.Snapshots == 1 })

	own := testGrant(time.Hour)
	if err := b.Publish(ctx, own); err != nil {
		t.Fatal(err)
	}
	bad := testGrant(time.Hour)
	if _, err := admin.Put(ctx, GrantKey("g", bad.ID), `{"v":1,"id":"`+bad.ID+`"}`); err != nil {
		t.Fatal(err)
	}
	mismatched := testGrant(time.Hour)
	mismatched.Origin = "a"
	val, _ := mismatched.Marshal()
	if _, err := admin.Put(ctx, GrantKey("g", journalID(t)), string(val)); err != nil {
		t.Fatal(err)
	}
	replaced := testGrant(time.Hour)
	last := testGrant(time.Hour)
	for _, g := range []Grant{replaced, last} {
		if err := a.Publish(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	b.node.waitFor(t, "b applies a's grants", b.node.has(replaced.ID, last.ID))
	if _, err := admin.Put(ctx, GrantKey("g", replaced.ID), "garbage"); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b ends the grant whose value turned to garbage", b.node.lacks(replaced.ID))
	b.node.mu.Lock()
	defer b.node.mu.Unlock()
	if _, ok := b.node.grants[own.ID]; ok {
		t.Errorf("b was handed its own grant")
	}
	if len(b.node.grants) != 1 {
		t.Errorf("b holds %d grants, want only %s: %+v", len(b.node.grants), last.ID, b.node.grants)
	}
	if st := b.Status(); st.Refused != 3 {
		t.Errorf("Refused = %d, want 3 (missing members, id mismatch, garbage)", st.Refused)
	}
}

func journalID(t *testing.T) string { return testGrant(0).ID }

// A node resumes after the revision its store holds: it replays what
// happened since, nothing before, and takes no snapshot.
func TestWatchResumesFromStore(t *testing.T) {
	c := startCluster(t, 1)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	ctx := ctxT(t)

	before, gone, after := testGrant(time.Hour), testGrant(time.Hour), testGrant(time.Hour)
	if err := a.Publish(ctx, before); err != nil {
		t.Fatal(err)
	}
	snap, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []Grant{gone, after} {
		if err := a.Publish(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Revoke(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	b := startMember(t, config("g", "b", c.Endpoints()), snap.Rev, Options{})
	b.node.waitFor(t, "b replays the grant made after its revision", b.node.has(after.ID))
	b.node.waitFor(t, "b replays the revocation", b.node.lacks(gone.ID))
	b.node.mu.Lock()
	defer b.node.mu.Unlock()
	if _, ok := b.node.grants[before.ID]; ok {
		t.Errorf("b applied a grant from before its revision: it did not resume")
	}
	if b.node.snapshots != 0 {
		t.Errorf("b took %d snapshots, want 0 (the history was there)", b.node.snapshots)
	}
}

// A store revision ahead of the cluster (etcd rebuilt) means a snapshot.
func TestWatchStoreAheadOfCluster(t *testing.T) {
	c := startCluster(t, 1)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	ctx := ctxT(t)
	g := testGrant(time.Hour)
	if err := a.Publish(ctx, g); err != nil {
		t.Fatal(err)
	}
	b := startMember(t, config("g", "b", c.Endpoints()), 1<<40, Options{})
	b.node.waitFor(t, "b re-lists", b.node.has(g.ID))
	if n := b.node.snapshotCount(); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}
}

// waitStatus polls a member's Status until cond holds, within settle.
func waitStatus(tb testing.TB, m *member, what string, cond func(Status) bool) Status {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st := m.Status()
		if cond(st) {
			return st
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("after %s: %s did not happen; status: %s", settle, what, st)
		case <-tick.C:
		}
	}
}

// With no change to the group while etcd's revision moves (other keys),
// progress notices keep the watch's progress (and so Lag) current: the
// lag metric means something and an idle watch is not taken for stalled.
func TestWatchIdleProgress(t *testing.T) {
	c := startCluster(t, 1)
	admin := c.Client(t)
	ctx := ctxT(t)
	b := startMember(t, config("g", "b", c.Endpoints()), 0, Options{ProbeInterval: 100 * time.Millisecond})
	waitStatus(t, b, "b connected", func(s Status) bool { return s.Connected })
	var last int64
	for range 20 {
		resp, err := admin.Put(ctx, "/other/key", time.Now().String())
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	st := waitStatus(t, b, "progress notices confirm the other keys' revisions", func(s Status) bool { return s.Progress >= last })
	if st.Revision >= last {
		t.Fatalf("Revision %d: it moved without a change to the group", st.Revision)
	}
	waitStatus(t, b, "lag 0", func(s Status) bool { return s.Lag() == 0 && s.Head >= last })
}
