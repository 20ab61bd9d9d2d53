package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sesame-knock/sesame/internal/etcdtest"
)

// One member of three is killed (the leader or not, by seed): grants
// keep flowing to every node and revocations too.
func TestFaultMemberKilled(t *testing.T) {
	rng := seed(t)
	c := startCluster(t, 3)
	eps := c.Endpoints()
	// Each node lists the members in another order, so their clients
	// start on different members.
	a := newFleet(t, config("g", "a", eps))
	b := startMember(t, config("g", "b", []string{eps[1], eps[2], eps[0]}), 0, Options{})
	d := startMember(t, config("g", "d", []string{eps[2], eps[0], eps[1]}), 0, Options{})
	ctx := ctxT(t)

	g1 := testGrant(time.Hour)
	if err := a.Publish(ctx, g1); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*member{b, d} {
		n.node.waitFor(t, "the grant reaches "+n.Node(), n.node.has(g1.ID))
	}

	victim := c.Members[rng.IntN(3)]
	if rng.IntN(2) == 0 {
		victim = leader(t, c)
	}
	t.Logf("killing etcd member %s (%s)", victim.Name, victim.ClientURL)
	victim.Kill()

	// A call in flight to the dead member fails (the client retries no
	// write it may have sent); the caller calls again, as the daemon does.
	var ids []string
	for range 5 {
		g := testGrant(time.Hour)
		if err := retry(t, "Publish", func() error { return a.Publish(ctx, g) }); err != nil {
			t.Fatalf("Publish with one member dead: %v", err)
		}
		ids = append(ids, g.ID)
	}
	if err := retry(t, "Revoke", func() error { return a.Revoke(ctx, g1.ID) }); err != nil {
		t.Fatalf("Revoke with one member dead: %v", err)
	}
	for _, n := range []*member{b, d} {
		n.node.waitFor(t, "grants made after the kill reach "+n.Node(), n.node.has(ids...))
		n.node.waitFor(t, "the revocation reaches "+n.Node(), n.node.lacks(g1.ID))
		waitStatus(t, n, n.Node()+" reports itself connected", func(s Status) bool { return s.Connected && s.Revision > 0 })
	}
}

func leader(t *testing.T, c *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	cli := c.Client(t)
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			return m
		}
	}
	t.Fatal("no leader")
	return nil
}

// cutOff starts a member whose every connection to etcd goes through a
// proxy the test can cut.
func cutOff(t *testing.T, c *etcdtest.Cluster, name string, rev int64) (*member, []*etcdtest.Proxy) {
	var eps []string
	var proxies []*etcdtest.Proxy
	for _, m := range c.Members {
		p := etcdtest.NewProxy(t, strings.TrimPrefix(m.ClientURL, "http://"))
		proxies = append(proxies, p)
		eps = append(eps, "http://"+p.Addr)
	}
	return startMember(t, config("g", name, eps), rev, Options{}), proxies
}

// A node cut off from etcd (a black hole, not a reset) notices, and
// after reconnecting applies the grants made meanwhile that are still
// live and drops those revoked, replaying the history (no snapshot).
func TestFaultCutOffAndReconnect(t *testing.T) {
	c := startCluster(t, 3)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	b, proxies := cutOff(t, c, "b", 0)
	ctx := ctxT(t)

	old := testGrant(time.Hour)
	if err := a.Publish(ctx, old); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b applies the grant", b.node.has(old.ID))
	waitStatus(t, b, "b connected", func(s Status) bool { return s.Connected })

	for _, p := range proxies {
		p.Cut()
	}
	live, gone := testGrant(time.Hour), testGrant(time.Hour)
	for _, g := range []Grant{live, gone} {
		if err := a.Publish(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{gone.ID, old.ID} {
		if err := a.Revoke(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	st := waitStatus(t, b, "b notices it is cut off", func(s Status) bool { return !s.Connected })
	t.Logf("while cut off: %s", st)
	b.node.mu.Lock()
	_, stillOld := b.node.grants[old.ID]
	b.node.mu.Unlock()
	if !stillOld {
		t.Fatalf("b saw the revocation through a cut connection: the cut does not work")
	}

	for _, p := range proxies {
		p.Restore()
	}
	b.node.waitFor(t, "b applies the grant made while it was away", b.node.has(live.ID))
	b.node.waitFor(t, "b drops the grants revoked while it was away", b.node.lacks(old.ID, gone.ID))
	waitStatus(t, b, "b reconnected", func(s Status) bool { return s.Connected })
	if n := b.node.snapshotCount(); n != 1 {
		t.Errorf("%d snapshots, want only the first (the history was kept)", n)
	}
}

// A node cut off while its watch stream is being opened (right after
// its first snapshot) notices it, and applies what was made meanwhile
// once the network is back. The client's Watch call waits for its
// stream: the probes must not wait with it.
func TestFaultCutWhileOpeningWatch(t *testing.T) {
	c := startCluster(t, 3)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	ctx := ctxT(t)
	old := testGrant(time.Hour)
	if err := a.Publish(ctx, old); err != nil {
		t.Fatal(err)
	}
	var proxies []*etcdtest.Proxy
	var eps []string
	for _, m := range c.Members {
		p := etcdtest.NewProxy(t, strings.TrimPrefix(m.ClientURL, "http://"))
		proxies = append(proxies, p)
		eps = append(eps, "http://"+p.Addr)
	}
	n := newNode(0)
	cut := make(chan struct{})
	n.onSnapshot = func() {
		select {
		case <-cut:
		default:
			for _, p := range proxies {
				p.Cut()
			}
			close(cut)
		}
	}
	b := startNode(t, config("g", "b", eps), n, Options{ProbeInterval: time.Second, ProbeTimeout: time.Second})
	b.node.waitFor(t, "b applies the grant from its snapshot", b.node.has(old.ID))
	<-cut
	st := waitStatus(t, b, "b notices it is cut off", func(s Status) bool { return !s.Connected })
	t.Logf("while cut off: %s", st)
	live := testGrant(time.Hour)
	if err := a.Publish(ctx, live); err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		p.Restore()
	}
	b.node.waitFor(t, "b applies the grant made while it was cut off", b.node.has(live.ID))
	waitStatus(t, b, "b connected again", func(s Status) bool { return s.Connected })
}

// etcd compacts the history while a node is away, both cut off and
// stopped: it re-lists instead of replaying, applies what is live and
// drops what was revoked.
func TestFaultCompactedWhileAway(t *testing.T) {
	c := startCluster(t, 3)
	a := newFleet(t, config("g", "a", c.Endpoints()))
	admin := c.Client(t)
	b, proxies := cutOff(t, c, "b", 0)
	ctx := ctxT(t)

	old := testGrant(time.Hour)
	if err := a.Publish(ctx, old); err != nil {
		t.Fatal(err)
	}
	b.node.waitFor(t, "b applies the grant", b.node.has(old.ID))

	// Cut off.
	for _, p := range proxies {
		p.Cut()
	}
	live := awayChanges(t, a, admin, old)
	for _, p := range proxies {
		p.Restore()
	}
	b.node.waitFor(t, "b applies the live grant after a re-list", b.node.has(live.ID))
	b.node.waitFor(t, "b drops the revoked grant", b.node.lacks(old.ID))
	if n := b.node.snapshotCount(); n != 2 {
		t.Fatalf("%d snapshots, want 2 (the first, and one after the compaction)", n)
	}
	if st := b.Status(); st.Snapshots != 2 {
		t.Fatalf("Status.Snapshots = %d, want 2", st.Snapshots)
	}

	// Stopped: a node restarting from its stored revision.
	rev, _ := b.node.FleetRevision()
	next := awayChanges(t, a, admin, live)
	r := startMember(t, config("g", "b2", c.Endpoints()), rev, Options{})
	r.node.waitFor(t, "the restarted node applies the live grant", r.node.has(next.ID))
	r.node.waitFor(t, "the restarted node drops the revoked one", r.node.lacks(live.ID))
	if n := r.node.snapshotCount(); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}
}

// awayChanges publishes a grant, revokes revoke, and compacts the
// history up to now; it returns the new grant.
func awayChanges(t *testing.T, a *Fleet, admin *clientv3.Client, revoke Grant) Grant {
	ctx := ctxT(t)
	g := testGrant(time.Hour)
	if err := a.Publish(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, revoke.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	return g
}

// Wrong TLS credentials give a clear error naming the key to fix, from
// Check and in Status; right ones work.
func TestFaultWrongTLS(t *testing.T) {
	pki := etcdtest.NewPKI(t, "fleet-ca")
	rogue := etcdtest.NewPKI(t, "rogue-ca")
	c := etcdtest.Start(t, etcdtest.Options{TLS: pki})
	cert, key := pki.ClientCert(t, "node-a")
	rcert, rkey := rogue.ClientCert(t, "node-a")
	ctx := ctxT(t)

	good := Config{Endpoints: c.Endpoints(), Group: "g", Node: "a", CA: pki.CAFile, Cert: cert, Key: key}
	f := newFleet(t, good)
	if err := f.Check(ctx); err != nil {
		t.Fatalf("Check with good credentials: %v", err)
	}
	if err := f.Publish(ctx, testGrant(time.Hour)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		mod  func(*Config)
		key  string
	}{
		{"client certificate from another CA", func(c *Config) { c.Cert, c.Key = rcert, rkey }, KeyCert},
		{"CA that does not verify the server", func(c *Config) { c.CA = rogue.CAFile }, KeyCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			f, err := New(cfg, Options{Logger: testLogger(t, "bad"), DialTimeout: 2 * time.Second, ProbeTimeout: 2 * time.Second})
			if err != nil {
				t.Fatalf("New: %v (bad credentials must not stop the daemon from starting)", err)
			}
			defer f.Close()
			err = f.Check(ctx)
			if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), c.Members[0].ClientURL) {
				t.Fatalf("Check: %v; want ErrTLS naming %s and the endpoint", err, tc.key)
			}
			t.Logf("Check: %v", err)
		})
	}

	// Run with bad credentials: Status says why.
	cfg := good
	cfg.Cert, cfg.Key = rcert, rkey
	m := startMember(t, cfg, 0, Options{DialTimeout: 2 * time.Second, ProbeTimeout: 2 * time.Second})
	st := waitStatus(t, m, "Status reports the TLS failure", func(s Status) bool { return s.Err != "" })
	if st.Connected || !strings.Contains(st.Err, KeyCert) {
		t.Fatalf("status %s; want not connected, naming %s", st, KeyCert)
	}
}
