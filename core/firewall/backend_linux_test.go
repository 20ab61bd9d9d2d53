package firewall

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// families are the client addresses each test grants and the ones that
// must stay blocked.
var families = []struct {
	name          string
	client, other netip.Addr
}{
	{"ipv4", netnstest.ClientAddr4, otherClient4},
	{"ipv6", netnstest.ClientAddr6, otherClient6},
}

func forEachVariant(t *testing.T, fn func(t *testing.T, v variant)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

func findGrant(gs []Grant, id string) (Grant, int) {
	n := 0
	var found Grant
	for _, g := range gs {
		if g.ID == id {
			found = g
			n++
		}
	}
	return found, n
}

// A grant opens the guarded port to its source only, and after its
// deadline the port is closed again: by the kernel alone for nftables, by
// Reconcile for iptables.
func TestGrantOpensThenCloses(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		for _, f := range families {
			e.wantBlocked(f.client, f.name+" before any grant")
			g := Grant{ID: "open-" + f.name, Door: "ssh", Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(3 * time.Second)}
			e.grant(g)
			e.wantOpen(f.client, f.name+" after Grant")
			e.wantBlocked(f.other, f.name+" other address while "+f.client.String()+" is granted")
			if got, n := findGrant(e.list(), g.ID); n != 1 || !sameGrant(got, mustNormalize(t, g)) {
				t.Fatalf("%s: List has %d of %s: %v", f.name, n, g.ID, got)
			}
			time.Sleep(time.Until(g.Deadline))
			if v.isNFT() {
				// Nothing is called: the element's kernel timeout closes it.
				if !pollUntil(1500*time.Millisecond, 20*time.Millisecond, func() bool {
					return e.dial(f.client, blockedTimeout) != nil && e.entries() == 0
				}) {
					t.Fatalf("%s: still open, or %d elements left, 1.5s after the deadline", f.name, e.entries())
				}
				continue
			}
			rep := e.reconcile(g)
			if ids(rep.Removed) == nil || ids(rep.Removed)[0] != g.ID || len(rep.Restored) != 0 {
				t.Fatalf("%s: reconcile after the deadline: %+v", f.name, rep)
			}
			e.wantBlocked(f.client, f.name+" after the deadline and Reconcile")
			if n := e.entries(); n != 0 {
				t.Fatalf("%s: %d rules left after Reconcile", f.name, n)
			}
		}
	})
}

func mustNormalize(t *testing.T, g Grant) Grant {
	t.Helper()
	n, err := normalize(g)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// With nothing running after Grant, the port closes by itself at the
// deadline: nftables by element timeout (required), iptables by the time
// match (belt and braces, at most a second late since it has whole
// seconds).
func TestExpiresWithoutProcess(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		src := netnstest.ClientAddr4
		g := Grant{ID: "lapse", Src: src, Ports: guardedPorts, Deadline: time.Now().Add(2 * time.Second)}
		e.grant(g)
		if v.isNFT() {
			els := nftElements(t, e.pair.Server, nftAllow4)
			if len(els) != 1 || els[0].Expires < 1 || els[0].Expires > 2 || !strings.Contains(els[0].Comment, "id=lapse") {
				t.Fatalf("allow4 elements: %+v, want one expiring within 2s", els)
			}
			t.Logf("nft -j list set: timeout %ds expires %ds comment %q", els[0].Timeout, els[0].Expires, els[0].Comment)
		} else {
			rules := e.pair.Server.MustRun(v.bins[0], "-S", ipChain)
			if !strings.Contains(rules, "--datestop") {
				t.Fatalf("rule has no time match:\n%s", rules)
			}
		}
		e.wantOpen(src, "right after Grant")
		// A drop is permanent and a slow handshake on a loaded machine is
		// not: a closure counts from the first of two failed dials in a row.
		var closedAt time.Time
		ok := pollUntil(time.Until(g.Deadline)+1500*time.Millisecond, 20*time.Millisecond, func() bool {
			at := time.Now()
			if e.dial(src, 250*time.Millisecond) == nil || e.dial(src, 250*time.Millisecond) == nil {
				return false
			}
			closedAt = at
			return true
		})
		if !ok {
			t.Fatalf("still open 1.5s after the deadline")
		}
		early := g.Deadline.Sub(closedAt)
		t.Logf("closed %v after the deadline", -early)
		if early > 300*time.Millisecond {
			t.Fatalf("closed %v before the deadline", early)
		}
	})
}

// Granting again extends the deadline in place: no duplicate rules or
// elements, and the address stays admitted throughout. Another grant with
// the same source and ports shares the entry, and revoking one leaves the
// other working.
func TestRepeatGrantExtendsWithoutGap(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		src := netnstest.ClientAddr4
		g := Grant{ID: "ext", Src: src, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
		e.grant(g)
		if n := e.entries(); n != 1 {
			t.Fatalf("%d entries after the first grant", n)
		}

		// Dial continuously while the grant is extended over and over.
		dropsBefore := e.drops()
		var dials, failures atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				dials.Add(1)
				if err := e.dial(src, time.Second); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
		extensions := 0
		for start := time.Now(); time.Since(start) < 1500*time.Millisecond; extensions++ {
			g.Deadline = g.Deadline.Add(time.Second)
			e.grant(g)
			if n := e.entries(); n != 1 {
				close(stop)
				wg.Wait()
				t.Fatalf("%d entries after extension %d", n, extensions)
			}
		}
		close(stop)
		wg.Wait()
		t.Logf("%d extensions, %d dials during them", extensions, dials.Load())
		if dials.Load() < 5 {
			t.Fatalf("only %d dials", dials.Load())
		}
		// A dial can also time out because a loaded machine stalled the
		// test for a second; a gap in the grant shows as a dropped SYN.
		if failures.Load() > 0 {
			if d := e.drops() - dropsBefore; d > 0 {
				t.Fatalf("%d of %d dials failed while extending (first: %v), %d packets dropped", failures.Load(), dials.Load(), firstErr.Load(), d)
			}
			t.Logf("%d dials timed out with no packet dropped: the machine stalled, not the grant", failures.Load())
		}
		got, n := findGrant(e.list(), g.ID)
		if n != 1 || !SameDeadline(got.Deadline, g.Deadline) {
			t.Fatalf("List: %d of %s, deadline %v, want %v", n, g.ID, got.Deadline, g.Deadline)
		}

		// Same source and ports, another grant: shared, not duplicated.
		h := Grant{ID: "other-door", Src: src, Ports: guardedPorts, Deadline: time.Now().Add(2 * time.Minute)}
		e.grant(h)
		if n := e.entries(); n != 1 {
			t.Fatalf("%d entries with two grants on the same source and ports", n)
		}
		if gs := e.list(); len(gs) != 2 {
			t.Fatalf("List: %v, want both grants", gs)
		}
		e.revoke(g)
		e.wantOpen(src, "after revoking one of two grants")
		if gs := e.list(); len(gs) != 1 || gs[0].ID != h.ID {
			t.Fatalf("List after revoking %s: %v", g.ID, gs)
		}
		e.revoke(h)
		e.wantBlocked(src, "after revoking both grants")
		if n := e.entries(); n != 0 {
			t.Fatalf("%d entries after revoking both", n)
		}
		e.revoke(h) // already gone: not an error

		// An IPv4-mapped source lands in the IPv4 entries, unmapped.
		m := Grant{ID: "mapped", Src: netip.AddrFrom16(src.As16()), Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
		e.grant(m)
		e.wantOpen(src, "after granting its IPv4-mapped form")
		if got, n := findGrant(e.list(), m.ID); n != 1 || got.Src != src {
			t.Fatalf("mapped grant listed as %v", got)
		}
		if !v.isNFT() {
			if j := e.jumps(); j != [2]int{1, 1} {
				t.Fatalf("jumps to SESAME: %v", j)
			}
		}
	})
}

// sabotage is something an admin or a firewall reload does to the
// firewall while grants are live.
type sabotage struct {
	name      string
	nft       bool
	do        func(t *testing.T, e *testEnv)
	recreated bool // Reconcile must report the base objects rebuilt
	restored  bool // Reconcile must report the grants restored
}

func eachBin(argv ...string) func(t *testing.T, e *testEnv) {
	return func(t *testing.T, e *testEnv) {
		for _, bin := range e.v.bins {
			e.pair.Server.MustRun(append([]string{bin}, argv...)...)
		}
	}
}

func nftCmd(argv ...string) func(t *testing.T, e *testEnv) {
	return func(t *testing.T, e *testEnv) { e.pair.Server.MustRun(append([]string{"nft"}, argv...)...) }
}

var sabotages = []sabotage{
	{name: "iptables -F", do: eachBin("-F"), recreated: true, restored: true},
	{name: "iptables -F SESAME", do: eachBin("-F", ipChain), restored: true},
	{name: "iptables -D INPUT -j SESAME", do: eachBin("-D", ipInput, "-j", ipChain), recreated: true},
	{name: "iptables -F then -X", do: func(t *testing.T, e *testEnv) { eachBin("-F")(t, e); eachBin("-X")(t, e) }, recreated: true, restored: true},
	{name: "nft flush ruleset, admin reloads", nft: true, do: func(t *testing.T, e *testEnv) {
		e.pair.Server.MustRun("nft", "flush", "ruleset")
		lockDown(t, e.pair.Server, e.v)
	}, recreated: true, restored: true},
	{name: "nft delete table inet sesame", nft: true, do: nftCmd("delete", "table", "inet", nftTable), recreated: true, restored: true},
	{name: "nft flush chain guard", nft: true, do: nftCmd("flush", "chain", "inet", nftTable, nftGuard), recreated: true},
	{name: "nft flush sets allow4 allow6", nft: true, do: func(t *testing.T, e *testEnv) {
		nftCmd("flush", "set", "inet", nftTable, nftAllow4)(t, e)
		nftCmd("flush", "set", "inet", nftTable, nftAllow6)(t, e)
	}, restored: true},
	{name: "nft flush set guarded", nft: true, do: nftCmd("flush", "set", "inet", nftTable, nftGuarded), recreated: true},
}

// After someone flushes or reloads the firewall, Reconcile rebuilds
// Sesame's objects and restores the live grants: the granted clients
// connect again and everyone else is still blocked.
func TestReconcileRestoresAfterFlush(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		for _, s := range sabotages {
			if s.nft != v.isNFT() {
				continue
			}
			t.Run(s.name, func(t *testing.T) {
				e := newTestEnv(t, v)
				var live []Grant
				for _, f := range families {
					g := Grant{ID: "keep-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
					e.grant(g)
					e.wantOpen(f.client, "before "+s.name)
					live = append(live, g)
				}
				s.do(t, e)
				rep := e.reconcile(live...)
				t.Logf("report: recreated=%v restored=%v removed=%v", rep.Recreated, ids(rep.Restored), ids(rep.Removed))
				if rep.Recreated != s.recreated {
					t.Errorf("Recreated = %v, want %v", rep.Recreated, s.recreated)
				}
				wantRestored := []string(nil)
				if s.restored {
					wantRestored = []string{"keep-ipv4", "keep-ipv6"}
				}
				if got := ids(rep.Restored); !slices.Equal(got, wantRestored) || len(rep.Removed) != 0 {
					t.Errorf("restored %v removed %v, want restored %v", got, ids(rep.Removed), wantRestored)
				}
				for _, f := range families {
					e.wantOpen(f.client, "after "+s.name+" and Reconcile")
					e.wantBlocked(f.other, "other address after "+s.name+" and Reconcile")
				}
				if again := e.reconcile(live...); again.Changed() {
					t.Errorf("second Reconcile changed things: %+v", again)
				}
				if n := e.entries(); n != 2 {
					t.Errorf("%d entries, want 2", n)
				}
				if !v.isNFT() {
					if j := e.jumps(); j != [2]int{1, 1} {
						t.Errorf("jumps to SESAME: %v", j)
					}
				}
			})
		}
	})
}

// Teardown removes Sesame's objects and nothing of the admin's.
func TestTeardownLeavesAdminRules(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnvNoSetup(t, v)
		before := adminRules(t, e.pair.Server, v)
		e.must(e.in(func(ctx context.Context, b Backend) error { return b.Setup(ctx, guardedPorts) }))
		for _, f := range families {
			e.grant(Grant{ID: "td-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
		}
		if left := sesameObjects(t, e.pair.Server, v); left == "" {
			t.Fatal("no Sesame objects after Setup and Grant")
		}
		if during := adminRules(t, e.pair.Server, v); during != before {
			t.Fatalf("admin rules changed by Setup/Grant:\nbefore:\n%s\nduring:\n%s", before, during)
		}
		e.must(e.in(func(ctx context.Context, b Backend) error { return b.Teardown(ctx) }))
		if after := adminRules(t, e.pair.Server, v); after != before {
			t.Fatalf("admin rules changed by Teardown:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if left := sesameObjects(t, e.pair.Server, v); left != "" {
			t.Fatalf("Sesame objects left after Teardown:\n%s", left)
		}
		e.must(e.in(func(ctx context.Context, b Backend) error { return b.Teardown(ctx) }))
		if v.isNFT() {
			// The admin's own rule accepts the guarded port; with Sesame's
			// guard gone, it is open to everyone (see the package doc).
			e.wantOpen(otherClient4, "after Teardown, nftables")
		} else {
			e.wantBlocked(netnstest.ClientAddr4, "after Teardown")
		}
	})
}

// A second Setup, and a restarted Sesame's Setup, adopt what is there:
// one jump, one table, the grants kept.
func TestSetupAdoptsPredecessor(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		e.must(e.in(func(ctx context.Context, b Backend) error { return b.Setup(ctx, guardedPorts) }))
		g := Grant{ID: "survivor", Src: netnstest.ClientAddr6, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
		e.grant(g)

		// A restarted daemon: new backend, one more guarded port.
		e.b = e.newBackend()
		more := append(slices.Clone(guardedPorts), knock.Port{Num: guardedPort + 1, Proto: knock.UDP})
		e.must(e.in(func(ctx context.Context, b Backend) error { return b.Setup(ctx, more) }))
		if got, n := findGrant(e.list(), g.ID); n != 1 || !sameGrant(got, mustNormalize(t, g)) {
			t.Fatalf("after restart List has %d of %s: %v", n, g.ID, got)
		}
		e.wantOpen(g.Src, "after restart")
		if n := e.entries(); n != 1 {
			t.Fatalf("%d entries after restart", n)
		}
		ensure := func() bool {
			var recreated bool
			e.must(e.in(func(ctx context.Context, b Backend) (err error) {
				recreated, err = b.(BaseKeeper).EnsureBase(ctx)
				return err
			}))
			return recreated
		}
		if ensure() {
			t.Fatal("EnsureBase on an intact firewall reported a rebuild")
		}
		if v.isNFT() {
			if els := nftElements(t, e.pair.Server, nftGuarded); len(els) != 2 {
				t.Fatalf("guarded has %d elements, want 2", len(els))
			}
			out := e.pair.Server.MustRun("nft", "list", "chain", "inet", nftTable, nftInput)
			if n := strings.Count(out, "jump "+nftGuard); n != 1 {
				t.Fatalf("%d jumps to guard:\n%s", n, out)
			}
			return
		}
		if j := e.jumps(); j != [2]int{1, 1} {
			t.Fatalf("jumps after two Setups and a restart: %v", j)
		}
		eachBin("-A", ipInput, "-j", ipChain)(t, e)
		if !ensure() {
			t.Fatal("EnsureBase did not report the duplicate jump")
		}
		if j := e.jumps(); j != [2]int{1, 1} {
			t.Fatalf("jumps after repairing a duplicate: %v", j)
		}
		// An admin rule inserted above the jump is left where it is.
		eachBin("-I", ipInput, "1", "-p", "udp", "--dport", "9", "-j", "DROP")(t, e)
		if ensure() {
			t.Fatal("EnsureBase moved or re-added a jump that was merely not first")
		}
		e.wantOpen(g.Src, "with an admin rule above the jump")
	})
}

// Detect in namespaces set up like real hosts.
func TestDetectInNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTools(t, "nft", "iptables-nft", "iptables-legacy", "ip6tables-legacy")
	nativeLocked := func(t *testing.T, ns *netnstest.NS) { lockDown(t, ns, variant{kind: NFTables}) }
	run := func(argv ...string) func(*testing.T, *netnstest.NS) {
		return func(t *testing.T, ns *netnstest.NS) { ns.MustRun(argv...) }
	}
	sesameSetUp := func(kind Kind) func(*testing.T, *netnstest.NS) {
		return func(t *testing.T, ns *netnstest.NS) {
			if err := ns.Do(func() error {
				b, err := New(kind, nil)
				if err != nil {
					return err
				}
				return b.Setup(context.Background(), guardedPorts)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		setup []func(*testing.T, *netnstest.NS)
		want  Kind
		err   error
	}{
		{"empty", nil, NFTables, nil},
		{"iptables-legacy policy drop", []func(*testing.T, *netnstest.NS){run("iptables-legacy", "-P", "INPUT", "DROP")}, IPTablesLegacy, nil},
		{"ip6tables-legacy rule", []func(*testing.T, *netnstest.NS){run("ip6tables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")}, IPTablesLegacy, nil},
		{"iptables-nft rules", []func(*testing.T, *netnstest.NS){run("iptables-nft", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"), run("iptables-nft", "-P", "INPUT", "DROP")}, IPTablesNFT, nil},
		{"iptables-nft forward only (Docker-like)", []func(*testing.T, *netnstest.NS){run("iptables-nft", "-P", "FORWARD", "DROP"), run("iptables-nft", "-A", "FORWARD", "-j", "ACCEPT")}, NFTables, nil},
		{"native nftables", []func(*testing.T, *netnstest.NS){nativeLocked}, NFTables, nil},
		{"only Sesame's iptables-nft chain", []func(*testing.T, *netnstest.NS){sesameSetUp(IPTablesNFT)}, NFTables, nil},
		{"only Sesame's legacy chain", []func(*testing.T, *netnstest.NS){sesameSetUp(IPTablesLegacy)}, NFTables, nil},
		{"only Sesame's nft table", []func(*testing.T, *netnstest.NS){sesameSetUp(NFTables)}, NFTables, nil},
		{"legacy and native", []func(*testing.T, *netnstest.NS){run("iptables-legacy", "-P", "INPUT", "DROP"), nativeLocked}, Auto, ErrMixedFirewalls},
		{"iptables-nft and native", []func(*testing.T, *netnstest.NS){run("iptables-nft", "-P", "INPUT", "DROP"), nativeLocked}, Auto, ErrMixedFirewalls},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.NewNS(t, "det")
			netnstest.RequireExecInNS(t, ns)
			for _, f := range tc.setup {
				f(t, ns)
			}
			got, detail, err := detectIn(t, ns)
			t.Logf("%v: %s (err %v)", got, detail, err)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Detect = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func detectIn(t *testing.T, ns *netnstest.NS) (k Kind, detail string, err error) {
	t.Helper()
	if derr := ns.Do(func() error {
		k, detail, err = Detect(context.Background())
		return nil
	}); derr != nil {
		t.Fatal(derr)
	}
	return k, detail, err
}

// As many grants as a comment can name share one entry for the same
// source and ports; the kernel stores and returns the long comment intact
// (254 bytes is nftables' userdata limit, 255 iptables'); one more is
// refused rather than dropped silently.
func TestSharedEntryLongComment(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		src := netnstest.ClientAddr6
		var gs []Grant
		for _, c := range "abcd" {
			g := Grant{ID: strings.Repeat(string(c), maxIDLen), Src: src, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
			e.grant(g)
			gs = append(gs, g)
		}
		if n := e.entries(); n != 1 {
			t.Fatalf("%d entries for 4 grants on one source and port", n)
		}
		listed := e.list()
		if len(listed) != 4 {
			t.Fatalf("List: %v", listed)
		}
		for i, g := range gs {
			if !sameGrant(listed[i], mustNormalize(t, g)) {
				t.Fatalf("listed %v, want %v", listed[i], g)
			}
		}
		if v.isNFT() {
			els := nftElements(t, e.pair.Server, nftAllow6)
			if len(els) != 1 || len(els[0].Comment) != len(formatComment(claimsOf(gs))) {
				t.Fatalf("nft shows %+v", els)
			}
		}
		fifth := Grant{ID: strings.Repeat("e", maxIDLen), Src: src, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
		err := e.in(func(ctx context.Context, b Backend) error { return b.Grant(ctx, fifth, time.Now()) })
		if !errors.Is(err, ErrTooManyClaims) {
			t.Fatalf("fifth grant: %v, want ErrTooManyClaims", err)
		}
		e.wantOpen(src, "after the refused fifth grant")
	})
}

func claimsOf(gs []Grant) []claim {
	var cs []claim
	for _, g := range gs {
		cs = mergeClaims(cs, claim{g.ID, untilSecs(g.Deadline)})
	}
	return cs
}

// A knock that arrives after a firewall reload but before the next
// Reconcile still opens the door: Grant repairs Sesame's base objects
// itself.
func TestGrantRepairsFlushedBase(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		// A firewall reload: everything flushed, the admin's rules put back.
		if v.isNFT() {
			e.pair.Server.MustRun("nft", "flush", "ruleset")
		} else {
			eachBin("-F")(t, e)
			eachBin("-X")(t, e)
		}
		lockDown(t, e.pair.Server, v)
		for _, f := range families {
			e.grant(Grant{ID: "after-flush-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
			e.wantOpen(f.client, "grant right after a flush")
			e.wantBlocked(f.other, "other address right after a flush and a grant")
		}
	})
}

// A table inet sesame of another shape (an older Sesame, a hand-made
// one) is replaced by Setup, not half-reused.
func TestNFTSetupReplacesForeignTable(t *testing.T) {
	e := newTestEnvNoSetup(t, variants[2])
	nftScript(t, e.pair.Server, `table inet sesame {
	set allow4 { type ipv4_addr; flags timeout; }
	chain input { type filter hook input priority filter; policy accept; ip saddr @allow4 accept; }
}`)
	e.must(e.in(func(ctx context.Context, b Backend) error { return b.Setup(ctx, guardedPorts) }))
	out := e.pair.Server.MustRun("nft", "list", "set", "inet", nftTable, nftAllow4)
	if !strings.Contains(out, "ipv4_addr . inet_proto . inet_service") {
		t.Fatalf("allow4 not replaced:\n%s", out)
	}
	g := Grant{ID: "fresh", Src: netnstest.ClientAddr4, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
	e.wantBlocked(g.Src, "after Setup replaced the foreign table")
	e.grant(g)
	e.wantOpen(g.Src, "after Grant in the replaced table")
}

// A Grant trusts table inet sesame only while the nf_tables generation is
// the one its backend's own batches left: after another nft command
// deletes or flushes the table between two grants, the next Grant sees
// the generation moved, rebuilds the table and its grant works, with
// everyone else still blocked (a flushed table that was trusted would
// have let everyone in).
func TestNFTGrantAfterForeignChange(t *testing.T) {
	for _, change := range [][]string{
		{"delete", "table", "inet", nftTable},
		{"flush", "table", "inet", nftTable},
		{"flush", "chain", "inet", nftTable, nftGuard},
	} {
		t.Run(strings.Join(change, " "), func(t *testing.T) {
			e := newTestEnv(t, variants[2])
			for _, f := range families {
				e.grant(Grant{ID: "before-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
				e.wantOpen(f.client, "before nft "+strings.Join(change, " "))
			}
			e.pair.Server.MustRun(append([]string{"nft"}, change...)...)
			for _, f := range families {
				e.grant(Grant{ID: "after-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
				e.wantOpen(f.client, "grant after nft "+strings.Join(change, " "))
				e.wantBlocked(f.other, "other address after nft "+strings.Join(change, " ")+" and a grant")
			}
		})
	}
}

// Grants for sources without an element skip reading the allow set (see
// nftBackend.held): against the kernel, each still lands with its own
// deadline and comment, a later grant for a source that has one still
// replaces it, and an element that expired in the kernel (still counted,
// so the set is read) is added again.
func TestNFTGrantsForNewSources(t *testing.T) {
	e := newTestEnv(t, variants[2])
	nb := e.b.(*nftBackend)
	for _, f := range families {
		// The first grant reads the set; the second, for a new source, does not.
		e.grant(Grant{ID: "a-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
		nb.mu.Lock()
		skip := nb.absentLocked(f.other)
		nb.mu.Unlock()
		if !skip {
			t.Fatalf("%s: after a read of the set, a new source would still read it", f.name)
		}
		e.grant(Grant{ID: "b-" + f.name, Src: f.other, Ports: guardedPorts, Deadline: time.Now().Add(2 * time.Minute)})
		e.wantOpen(f.client, "first grant")
		e.wantOpen(f.other, "grant without a read")
	}
	byID := map[string]Grant{}
	for _, g := range e.list() {
		byID[g.ID] = g
	}
	for _, f := range families {
		a, b := byID["a-"+f.name], byID["b-"+f.name]
		if a.Src != f.client || b.Src != f.other {
			t.Fatalf("%s: kernel holds %v", f.name, e.list())
		}
		if d := time.Until(b.Deadline); d < time.Minute || d > 2*time.Minute+time.Second { // List has whole seconds
			t.Errorf("%s: grant made without a read lapses in %v, want its own deadline (2 min)", f.name, d)
		}
		// Replacing the element of a source that has one reads the set.
		e.grant(Grant{ID: "b2-" + f.name, Src: f.other, Ports: guardedPorts, Deadline: time.Now().Add(3 * time.Minute)})
		e.revoke(Grant{ID: "b-" + f.name, Src: f.other})
		e.wantOpen(f.other, "the second grant after the first's revoke")
	}
	// An element that lapsed in the kernel is still counted: the next
	// grant for its source reads the set and adds it again.
	src := families[0].client
	e.revoke(Grant{ID: "a-ipv4", Src: src})
	e.grant(Grant{ID: "short", Src: src, Ports: guardedPorts, Deadline: time.Now().Add(time.Second)})
	deadline := time.Now().Add(30 * time.Second)
	for e.dial(src, time.Second) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a 1 s grant still open after 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.grant(Grant{ID: "again", Src: src, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)})
	e.wantOpen(src, "a grant after the source's element lapsed")
}
