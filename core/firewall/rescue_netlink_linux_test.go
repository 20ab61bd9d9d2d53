package firewall

import (
	"context"
	"testing"

	"github.com/sesame-knock/sesame/internal/nftrec"
)

// The exact messages of the nftables rescue, without a kernel: each
// change is one batch.
func TestNetlinkRescue(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		spec rescueSpec
		op   func(*nftRescue) error
	}{
		{"rescue-install", mustRescueSpec(t, "22/tcp,53/udp"), func(r *nftRescue) error { return r.install(ctx) }},
		{"rescue-install-from", mustRescueSpec(t, "22/tcp", "10.0.0.0/8", "2001:db8::/32"), func(r *nftRescue) error { return r.install(ctx) }},
		{"rescue-refresh", mustRescueSpec(t, "22/tcp,53/udp"), func(r *nftRescue) error { return r.refresh(ctx) }},
		// Open is the hold marker and the dropped heartbeat in one batch,
		// Close the released marker and a fresh heartbeat.
		{"rescue-open", mustRescueSpec(t, "22/tcp,53/udp"), func(r *nftRescue) error { return r.open(ctx) }},
		{"rescue-close", mustRescueSpec(t, "22/tcp,53/udp"), func(r *nftRescue) error { return r.close(ctx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &nftrec.Recorder{}
			r := newNFTRescue(tc.spec)
			r.dial = rec.Dial
			if err := tc.op(r); err != nil {
				t.Fatal(err)
			}
			if n := rec.Batches(); n != 1 {
				t.Errorf("%d batches, want 1", n)
			}
			golden(t, rec, tc.name)
		})
	}
}

// Remove on a kernel without the table changes nothing.
func TestNetlinkRescueRemoveNothing(t *testing.T) {
	rec := &nftrec.Recorder{}
	r := newNFTRescue(mustRescueSpec(t, "22/tcp"))
	r.dial = rec.Dial
	if err := r.remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := rec.Batches(); n != 0 {
		t.Errorf("%d batches, want none", n)
	}
}
