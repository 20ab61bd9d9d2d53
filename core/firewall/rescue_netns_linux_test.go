package firewall

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// rescue builds a Rescue for the guarded port with a 30s heartbeat, From
// the client's IPv4 address, in the server namespace.
func (e *testEnv) rescue() *Rescue {
	e.t.Helper()
	var r *Rescue
	e.must(e.pair.Server.Do(func() (err error) {
		r, err = NewRescue(e.v.kind, RescueSpec{Ports: guardedPorts, After: 30 * time.Second,
			From: []netip.Prefix{netip.PrefixFrom(netnstest.ClientAddr4, 32)}}, testLogger(e.t))
		return err
	}))
	return r
}

func (e *testEnv) rescueState(r *Rescue) (problems []string, held bool, left time.Duration) {
	e.t.Helper()
	e.must(e.pair.Server.Do(func() (err error) {
		problems, held, left, err = r.State(context.Background())
		return err
	}))
	return problems, held, left
}

// The rescue's kernel side in each family, next to the grants backend: a
// fresh Install is armed (its heartbeat is in place before anything reads
// it, so installing never opens the port for a moment), Open admits
// Rescue_From and no one else, Close shuts it again, and Remove leaves the
// grants backend's objects whole.
func TestRescueInKernel(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		e := newTestEnv(t, v)
		r := e.rescue()
		ctx := context.Background()
		e.must(e.pair.Server.Do(func() error { return r.Install(ctx) }))
		if problems, held, left := e.rescueState(r); len(problems) > 0 || held || left < 25*time.Second {
			t.Fatalf("fresh install: problems %q held %t left %s; want installed with a heartbeat", problems, held, left)
		}
		e.wantBlocked(netnstest.ClientAddr4, "fresh install")

		e.must(e.pair.Server.Do(func() error { return r.Open(ctx) }))
		if problems, held, left := e.rescueState(r); len(problems) > 0 || !held || left != 0 {
			t.Errorf("after Open: problems %q held %t left %s", problems, held, left)
		}
		e.wantOpen(netnstest.ClientAddr4, "open rescue, source in Rescue_From")
		e.wantBlocked(otherClient4, "open rescue, source not in Rescue_From")
		e.wantBlocked(netnstest.ClientAddr6, "open rescue, IPv6 source not in Rescue_From")

		e.must(e.pair.Server.Do(func() error { return r.Close(ctx) }))
		if problems, held, left := e.rescueState(r); len(problems) > 0 || held || left < 25*time.Second {
			t.Errorf("after Close: problems %q held %t left %s", problems, held, left)
		}
		// On nftables an admitted source keeps its way past guard for
		// rescueAdmitTimeout after the close.
		if !pollUntil(2*time.Second, 50*time.Millisecond, func() bool { return e.dial(netnstest.ClientAddr4, blockedTimeout) != nil }) {
			t.Error("rescue still admits the client 2s after Close")
		}

		e.must(e.pair.Server.Do(func() error { return r.Remove(ctx) }))
		if problems, _, _ := e.rescueState(r); len(problems) == 0 {
			t.Error("rescue still installed after Remove")
		}
		if left := rescueObjects(t, e); left != "" {
			t.Errorf("rescue objects left after Remove: %s", left)
		}
		e.must(e.in(func(ctx context.Context, b Backend) error {
			recreated, err := b.(BaseKeeper).EnsureBase(ctx)
			if recreated {
				t.Error("removing the rescue damaged the grants backend's objects")
			}
			return err
		}))
	})
}

// rescueObjects lists the rescue objects the server namespace holds, as
// nft, iptables and ipset show them; "" when there are none.
func rescueObjects(t *testing.T, e *testEnv) string {
	t.Helper()
	var found []string
	srv := e.pair.Server
	if out, err := srv.Run("nft", "list", "table", "inet", nftTable); err == nil && strings.Contains(out, "rescue") {
		found = append(found, "nft: "+out)
	}
	if out, _ := srv.Run("ipset", "list", "-n"); strings.Contains(out, ipsetName) {
		found = append(found, "ipset "+ipsetName)
	}
	for _, bin := range e.v.bins {
		if out, _ := srv.Run(bin, "-S"); strings.Contains(out, ipRescueChain) {
			found = append(found, bin+": "+out)
		}
	}
	return strings.Join(found, "; ")
}
