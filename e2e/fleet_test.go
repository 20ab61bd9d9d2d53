package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/etcdtest"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Fleet grants end to end: a real three-member etcd (Debian's etcd 3.4)
// and three sesamed nodes, each in its own server namespace with its own
// client namespace. Every pair has the same addresses, so the client
// that knocks on node a is, by address, the client of b and c too: a
// knock on a must let b's and c's clients in.

// fleetConf is a node's config: nftables, the protected port delegated
// to Sesame, a Fleet door; extra lines go into [options].
func fleetConf(node string, endpoints []string, extra ...string) string {
	return fmt.Sprintf(`[options]
	Interface = sesame0
	Firewall = nftables
	Fleet_Endpoints = %s
	Fleet_Group = e2e
	Fleet_Node = %s
%s[ssh]
	sequence = 7000,8000,9000
	seq_timeout = 5
	tcpflags = syn
	Open = %d/tcp
	Open_Timeout = 120
	Fleet = yes
`, strings.Join(endpoints, ","), node, optionLines(extra), protected)
}

func optionLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("\t" + l + "\n")
	}
	return b.String()
}

// etcdIn makes the cluster reachable from inside ns: for each member, a
// proxy listening on the namespace's loopback (its socket is opened
// inside the namespace) that forwards to the member on the host's
// loopback. It returns the endpoints to configure.
func etcdIn(t *testing.T, ns *netnstest.NS, c *etcdtest.Cluster) []string {
	t.Helper()
	eps, _ := etcdProxiesIn(t, ns, c)
	return eps
}

// etcdProxiesIn is etcdIn that also returns the proxies, to cut them.
func etcdProxiesIn(t *testing.T, ns *netnstest.NS, c *etcdtest.Cluster) ([]string, []*etcdtest.Proxy) {
	t.Helper()
	var eps []string
	var proxies []*etcdtest.Proxy
	for _, m := range c.Members {
		var p *etcdtest.Proxy
		if err := ns.Do(func() error {
			p = etcdtest.NewProxy(t, strings.TrimPrefix(m.ClientURL, "http://"))
			return nil
		}); err != nil || p == nil {
			t.Fatalf("proxy to etcd member %s in %s: %v", m.Name, ns.Name, err)
		}
		eps = append(eps, "http://"+p.Addr)
		proxies = append(proxies, p)
	}
	return eps, proxies
}

type fleetNode struct {
	name string
	pair *netnstest.Pair
	d    *proc
}

func (n fleetNode) socket() string { return filepath.Join(n.d.dir, "control.sock") }

func (n fleetNode) connects() bool {
	return connects(n.pair.Client, netip.Addr{}, netnstest.ServerAddr4)
}

// sesame runs the sesame command against the node's control socket.
func (n fleetNode) sesame(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin("sesame"), append(args, "--socket", n.socket())...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: sesame %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// deadline is grant id's deadline on the node (zero when it does not
// hold it).
func (n fleetNode) deadline(t *testing.T, id string) time.Time {
	t.Helper()
	var gs []grant.Grant
	if err := json.Unmarshal([]byte(n.sesame(t, "grants", "--json")), &gs); err != nil {
		t.Fatalf("%s: sesame grants --json: %v", n.name, err)
	}
	for _, g := range gs {
		if g.ID == id {
			return g.Deadline
		}
	}
	return time.Time{}
}

// fleetStatus is the node's fleet status, as sesame status reads it.
func (n fleetNode) fleetStatus(t *testing.T) control.FleetStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.NewClient(n.socket()).Status(ctx)
	if err != nil {
		t.Fatalf("%s: status: %v", n.name, err)
	}
	if st.Fleet == nil {
		t.Fatalf("%s: status without a fleet: %+v", n.name, st)
	}
	return *st.Fleet
}

// settleFleet bounds the waits for the group: a node connects and
// catches up within core/fleet's own bounds (a redial within 5 s, a
// watch retry within 15 s, a probe every 5 s), far less than this on a
// loaded machine. No wait here asserts a speed: BENCHMARKS.md has the
// propagation figures.
const settleFleet = 60 * time.Second

func TestFleetKnockOpensTheGroup(t *testing.T) {
	netnstest.RequireRoot(t)
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	var nodes []fleetNode
	for _, name := range []string{"a", "b", "c"} {
		p := netnstest.NewPair(t)
		loadAdminNFT(t, p.Server)
		listen(t, p.Server)
		eps := etcdIn(t, p.Server, c)
		d := startSesamed(t, p.Server, fleetConf(name, eps))
		nodes = append(nodes, fleetNode{name: name, pair: p, d: d})
	}
	for _, n := range nodes {
		n.d.waitLog("connected to etcd as "+n.name, settleFleet)
		if n.connects() {
			t.Fatalf("%s: the client connects before anyone knocked", n.name)
		}
		if st := n.fleetStatus(t); st.Group != "e2e" || st.Node != n.name || !st.Connected {
			t.Errorf("%s: fleet status %+v, want connected to group e2e as %s", n.name, st, n.name)
		}
	}

	a, b, cn := nodes[0], nodes[1], nodes[2]
	knockers[1].knock(t, a.pair.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
	knocked := time.Now()
	for _, n := range nodes {
		if !poll(settleFleet, n.connects) {
			t.Fatalf("%s: the client cannot connect after the knock on a; output:\n%s", n.name, n.d.out.String())
		}
		t.Logf("%s open %v after the knock (polled)", n.name, time.Since(knocked).Round(time.Millisecond))
	}
	a.d.waitLog("grant shared with fleet e2e", settleFleet)

	// Every node lists the grant, with a as its origin; a, b and c hold it.
	var list control.FleetList
	if err := json.Unmarshal([]byte(b.sesame(t, "grants", "--fleet", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Grants) != 1 {
		t.Fatalf("b lists %d fleet grants, want 1: %+v", len(list.Grants), list)
	}
	g := list.Grants[0]
	if g.Origin != "a" || g.Door != "ssh" || g.Source != netnstest.ClientAddr4 || !g.Here || list.Node != "b" {
		t.Fatalf("b lists %+v, want a's ssh grant for %s, held by b", g, netnstest.ClientAddr4)
	}
	for _, n := range nodes {
		if out := n.sesame(t, "grants"); !strings.Contains(out, g.ID) {
			t.Errorf("%s does not hold grant %s:\n%s", n.name, g.ID, out)
		}
	}
	if out := cn.sesame(t, "grants", "--fleet"); !strings.Contains(out, g.ID) || !strings.Contains(out, " a ") {
		t.Errorf("c's sesame grants --fleet:\n%s", out)
	}

	for _, n := range nodes {
		if st := n.fleetStatus(t); st.Revision == 0 || st.Unpublished != 0 {
			t.Errorf("%s: fleet status %+v, want a revision applied and nothing left to publish", n.name, st)
		}
	}

	// A re-knock on a moves the deadline on every node (Open_Timeout is
	// 120 s: a later knock's deadline is later).
	before := make(map[string]time.Time)
	for _, n := range nodes {
		before[n.name] = n.deadline(t, g.ID)
	}
	knockers[1].knock(t, a.pair.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
	for _, n := range nodes {
		if !poll(settleFleet, func() bool { return n.deadline(t, g.ID).After(before[n.name]) }) {
			t.Errorf("%s: the re-knock on a did not extend grant %s (deadline %v)", n.name, g.ID, before[n.name])
		}
	}

	// Revoked on c (which did not make it), it closes on every node.
	if out := cn.sesame(t, "revoke", g.ID); !strings.Contains(out, "revoked "+g.ID) {
		t.Fatalf("sesame revoke on c: %s", out)
	}
	for _, n := range nodes {
		if !poll(settleFleet, func() bool { return !n.connects() }) {
			t.Fatalf("%s: still open after the revocation on c; output:\n%s", n.name, n.d.out.String())
		}
	}
	for _, n := range nodes {
		if !poll(settleFleet, func() bool { return !strings.Contains(n.sesame(t, "grants"), g.ID) }) {
			t.Errorf("%s still lists %s after the revocation", n.name, g.ID)
		}
	}
}

// forwardIn listens on addr inside ns (any 127/8 address works on a
// namespace's loopback) and forwards each connection to the same addr
// in the test's own namespace, until the test ends: the node dials the
// member's own address, so its TLS name checks as it would.
func forwardIn(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
}

// A node whose client certificate etcd refuses says so at start, naming
// the key to fix, shows it in its status, and its local doors work.
func TestFleetWrongTLSLocalDoorsWork(t *testing.T) {
	netnstest.RequireRoot(t)
	pki := etcdtest.NewPKI(t, "fleet-ca")
	rogue := etcdtest.NewPKI(t, "rogue-ca")
	c := etcdtest.Start(t, etcdtest.Options{Members: 1, TLS: pki})
	m := c.Members[0]
	p := netnstest.NewPair(t)
	loadAdminNFT(t, p.Server)
	listen(t, p.Server)
	forwardIn(t, p.Server, strings.TrimPrefix(m.ClientURL, "https://"))
	cert, key := rogue.ClientCert(t, "a")
	conf := fleetConf("a", []string{m.ClientURL}, "Fleet_CA = "+pki.CAFile, "Fleet_Cert = "+cert, "Fleet_Key = "+key)
	d := startSesamed(t, p.Server, conf)
	n := fleetNode{name: "a", pair: p, d: d}
	d.waitLog("etcd refuses this node's TLS credentials", settleFleet)
	if out := d.out.String(); !strings.Contains(out, "Fleet_Cert") || !strings.Contains(out, m.ClientURL) {
		t.Errorf("the TLS error does not name Fleet_Cert and the endpoint:\n%s", out)
	}
	// The watcher's first probe records the error in the status.
	if !poll(settleFleet, func() bool { st := n.fleetStatus(t); return !st.Connected && strings.Contains(st.Error, "Fleet_Cert") }) {
		t.Errorf("fleet status %+v, want not connected, with the error naming Fleet_Cert", n.fleetStatus(t))
	}
	// sesame status calls that unhealthy, and says why.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := control.NewClient(n.socket()).Status(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy || !slices.ContainsFunc(st.Problems, func(p string) bool { return strings.Contains(p, "etcd not reached") }) {
		t.Errorf("status healthy %v, problems %q: want unhealthy, naming the fleet", st.Healthy, st.Problems)
	}
	knockers[1].knock(t, p.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
	if !poll(settleFleet, n.connects) {
		t.Fatalf("the local door did not open without the fleet; output:\n%s", d.out.String())
	}
	if out := n.sesame(t, "grants"); !strings.Contains(out, netnstest.ClientAddr4.String()) {
		t.Errorf("sesame grants:\n%s", out)
	}
}

// sesamed SIGKILLed after journaling a grant it could not publish yet
// (cut off from etcd) publishes it when it starts again, resuming from
// its journaled revision: the group gets the grant once, under its id,
// and the origin still holds it.
func TestFleetKilledBeforePublishing(t *testing.T) {
	netnstest.RequireRoot(t)
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	pa, pb := netnstest.NewPair(t), netnstest.NewPair(t)
	for _, p := range []*netnstest.Pair{pa, pb} {
		loadAdminNFT(t, p.Server)
		listen(t, p.Server)
	}
	epsA, proxies := etcdProxiesIn(t, pa.Server, c)
	dirA := t.TempDir()
	a := fleetNode{name: "a", pair: pa, d: startSesamedIn(t, pa.Server, dirA, fleetConf("a", epsA))}
	b := fleetNode{name: "b", pair: pb, d: startSesamed(t, pb.Server, fleetConf("b", etcdIn(t, pb.Server, c)))}
	// a applies the group once, so it journals a revision: after the
	// restart it resumes from it, with no snapshot to find its grant.
	a.d.waitLog("applied the group's grants", settleFleet)
	b.d.waitLog("connected to etcd as b", settleFleet)
	for _, p := range proxies {
		p.Cut()
	}

	knockers[1].knock(t, pa.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
	if !poll(settleFleet, a.connects) {
		t.Fatalf("a's local door did not open while etcd is out of reach; output:\n%s", a.d.out.String())
	}
	if !poll(settleFleet, func() bool { st := a.fleetStatus(t); return st.Unpublished == 1 && !st.Connected }) {
		t.Fatalf("a's fleet status %+v, want not connected and one grant unpublished", a.fleetStatus(t))
	}
	var gs []grant.Grant
	if err := json.Unmarshal([]byte(a.sesame(t, "grants", "--json")), &gs); err != nil || len(gs) != 1 {
		t.Fatalf("a's grants %+v (%v), want one", gs, err)
	}
	id := gs[0].ID
	a.d.kill()
	if b.connects() {
		t.Fatal("b opened a grant a never published")
	}

	for _, p := range proxies {
		p.Restore()
	}
	a.d = startSesamedIn(t, pa.Server, dirA, fleetConf("a", epsA))
	if !poll(settleFleet, b.connects) {
		t.Fatalf("b did not get the grant a journaled before it was killed; a's output:\n%s", a.d.out.String())
	}
	var list control.FleetList
	if err := json.Unmarshal([]byte(b.sesame(t, "grants", "--fleet", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Grants) != 1 || list.Grants[0].ID != id || list.Grants[0].Origin != "a" || !list.Grants[0].Here {
		t.Fatalf("the group holds %+v, want a's grant %s once, held by b", list.Grants, id)
	}
	if !poll(settleFleet, func() bool { return a.fleetStatus(t).Unpublished == 0 }) {
		t.Errorf("a's fleet status %+v, want nothing left to publish", a.fleetStatus(t))
	}
	if !strings.Contains(a.sesame(t, "grants"), id) {
		t.Errorf("a no longer holds its grant %s after the restart", id)
	}
}
