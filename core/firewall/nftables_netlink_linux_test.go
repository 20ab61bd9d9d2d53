package firewall

import (
	"context"
	"flag"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/nftrec"
)

var update = flag.Bool("update", false, "rewrite the golden netlink files in testdata/netlink")

// golden checks what rec recorded against testdata/netlink/name.txt.
func golden(t *testing.T, rec *nftrec.Recorder, name string) {
	t.Helper()
	rec.Match(t, filepath.Join("testdata", "netlink", name+".txt"), *update)
}

// recordedNFT is an nftables backend whose netlink messages go to a
// recorder that answers reads as a kernel without table inet sesame.
func recordedNFT() (*nftBackend, *nftrec.Recorder) {
	rec := &nftrec.Recorder{}
	b := newNFTables(hclog.NewNullLogger())
	b.dial = rec.Dial
	return b, rec
}

// The exact messages of the nftables backend, without a kernel: each
// change is one batch, and the bytes are pinned by the golden files.
func TestNetlinkSetup(t *testing.T) {
	b, rec := recordedNFT()
	if err := b.Setup(context.Background(), []knock.Port{udp(53), tcp(443), tcp(22)}); err != nil {
		t.Fatal(err)
	}
	if n := rec.Batches(); n != 1 {
		t.Errorf("Setup flushed %d batches, want 1", n)
	}
	golden(t, rec, "setup")
}

func TestNetlinkGrant(t *testing.T) {
	b, rec := recordedNFT()
	ctx := context.Background()
	if err := b.Setup(ctx, []knock.Port{tcp(22)}); err != nil {
		t.Fatal(err)
	}
	rec.Reset()
	now := time.Unix(1_700_000_000, 250_000_000)
	for _, g := range []Grant{
		mkGrant("ssh-1", netip.MustParseAddr("203.0.113.7"), now.Add(90*time.Second), tcp(22), tcp(443)),
		mkGrant("ssh-2", netip.MustParseAddr("2001:db8::7"), now.Add(time.Hour), udp(53)),
	} {
		if err := b.Grant(ctx, g, now); err != nil {
			t.Fatal(err)
		}
	}
	// Each Grant finds no table (the recorder's kernel is empty), so it
	// rebuilds the table in one batch, then adds its elements in another.
	if n := rec.Batches(); n != 4 {
		t.Errorf("two Grants flushed %d batches, want 4", n)
	}
	golden(t, rec, "grant")
}

func TestNetlinkTeardown(t *testing.T) {
	b, rec := recordedNFT()
	if err := b.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	golden(t, rec, "teardown")
}
