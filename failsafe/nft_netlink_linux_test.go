package failsafe

import (
	"context"
	"flag"
	"path/filepath"
	"testing"

	"github.com/sesame-knock/sesame/internal/nftrec"
)

var update = flag.Bool("update", false, "rewrite the golden netlink files in testdata/netlink")

func golden(t *testing.T, rec *nftrec.Recorder, name string) {
	t.Helper()
	rec.Match(t, filepath.Join("testdata", "netlink", name+".txt"), *update)
}

// The exact messages of the nftables rescue, without a kernel.
func TestNetlinkRescue(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		spec spec
		op   func(*nftGate) error
	}{
		{"rescue-install", mustSpec(t, "22/tcp,53/udp"), func(g *nftGate) error { return g.Install(ctx) }},
		{"rescue-install-from", mustSpec(t, "22/tcp", "10.0.0.0/8", "2001:db8::/32"), func(g *nftGate) error { return g.Install(ctx) }},
		{"rescue-refresh", mustSpec(t, "22/tcp,53/udp"), func(g *nftGate) error { return g.Refresh(ctx) }},
		{"rescue-drop", mustSpec(t, "22/tcp,53/udp"), func(g *nftGate) error { return g.Drop(ctx) }},
		{"rescue-hold", mustSpec(t, "22/tcp,53/udp"), func(g *nftGate) error { return g.SetHold(ctx, true) }},
		{"rescue-unhold", mustSpec(t, "22/tcp,53/udp"), func(g *nftGate) error { return g.SetHold(ctx, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &nftrec.Recorder{}
			g := newNFTGate(tc.spec)
			g.dial = rec.Dial
			if err := tc.op(g); err != nil {
				t.Fatal(err)
			}
			if n := rec.Batches(); n != 1 {
				t.Errorf("%d batches, want 1", n)
			}
			golden(t, rec, tc.name)
		})
	}
}
