package fleet

import (
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestPublishWatchRevoke(t *testing.T) {
	c := startCluster(t, 1)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	b := startMember(t, config("g", "b", c.Endpoints()), 0, Options{})
	ctx := ctxT(t)

	g := testGrant(time.Hour)
	if err := a.Publish(ctx, g); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b applies a's grant", b.node.has(g.ID))
	b.node.mu.Lock()
	got := b.node.grants[g.ID]
	b.node.mu.Unlock()
	if got.Origin != "a" || got.Door != g.Door || got.Source != g.Source || !got.Deadline.Equal(g.Deadline) {
		t.Fatalf("b holds %+v, want %+v from a", got, g)
	}

	later := g.Deadline.Add(time.Hour)
	if err := a.Extend(ctx, g.ID, later); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b sees the extension", func(m map[string]Grant) bool { return m[g.ID].Deadline.Equal(later) })

	if err := b.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b drops the revoked grant", b.node.lacks(g.ID))
	if err := a.Revoke(ctx, g.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Revoke: %v, want ErrNotFound", err)
	}
	if err := a.Extend(ctx, g.ID, later.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Extend after Revoke: %v, want ErrNotFound", err)
	}
	if err := a.Publish(ctx, g); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Publish after Revoke: %v, want ErrRevoked", err)
	}
	snap, err := a.List(ctx)
	if err != nil || len(snap.Grants) != 0 {
		t.Fatalf("List after Revoke: %v, %+v", err, snap.Grants)
	}
}

// Publishing again (a restarted node re-publishing what it journaled)
// writes nothing: one creation, no second event.
func TestPublishIdempotent(t *testing.T) {
	c := startCluster(t, 1)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	admin := c.Client(t)
	ctx := ctxT(t)

	g := testGrant(time.Hour)
	for i := range 3 {
		if err := a.Publish(ctx, g); err != nil {
			t.Fatalf("Publish #%d: %v", i+1, err)
		}
	}
	resp, err := admin.Get(ctx, GrantKey("g", g.ID))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get: %v %v", err, resp)
	}
	if v := resp.Kvs[0].Version; v != 1 {
		t.Fatalf("key written %d times, want once", v)
	}
	// A republish with a later deadline (extended locally before the
	// crash) carries it to the group.
	g2 := g
	g2.Deadline = g.Deadline.Add(time.Minute)
	if err := a.Publish(ctx, g2); err != nil {
		t.Fatal(err)
	}
	snap, err := a.List(ctx)
	if err != nil || len(snap.Grants) != 1 || !snap.Grants[0].Deadline.Equal(g2.Deadline) {
		t.Fatalf("List: %v %+v, want one grant until %s", err, snap.Grants, g2.Deadline)
	}
	// The lease outlives the deadline by LeaseSlack, no less.
	resp, _ = admin.Get(ctx, GrantKey("g", g.ID))
	ttl, err := admin.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(g2.Deadline); time.Duration(ttl.TTL)*time.Second < left {
		t.Fatalf("lease has %ds left, the grant %s", ttl.TTL, left)
	}
	if err := a.Publish(ctx, testGrant(-time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("Publish of an expired grant: %v, want ErrExpired", err)
	}
}
