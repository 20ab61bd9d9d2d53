package firewall

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"path/filepath"
	"slices"
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
	b.gen = rec.Generation
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
	// Nothing but the backend committed since Setup made the table, so
	// each Grant sends only its elements, in one batch.
	if n := rec.Batches(); n != 2 {
		t.Errorf("two Grants flushed %d batches, want 2", n)
	}
	golden(t, rec, "grant")
}

// A Grant trusts what the backend last made of table inet sesame while
// the nf_tables generation is the one its own batches left: it reads only
// the allow set, whose elements expire in the kernel without moving the
// generation. When someone else commits, or the generation cannot be
// read, the next Grant inspects the whole table again (the recorder's
// kernel has none, so it rebuilds it); EnsureBase, which Reconcile calls,
// always inspects.
func TestNetlinkGrantTrustsGeneration(t *testing.T) {
	b, rec := recordedNFT()
	ctx := context.Background()
	if err := b.Setup(ctx, []knock.Port{tcp(22)}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	src := netip.MustParseAddr("203.0.113.7")
	// The inspection stops at its first read: the recorder has no table.
	inspection := []string{"GETTABLE"}
	grant := func(id string, wantReads []string, wantBatches int) {
		t.Helper()
		rec.Reset()
		if err := b.Grant(ctx, mkGrant(id, src, now.Add(time.Minute), tcp(22)), now); err != nil {
			t.Fatal(err)
		}
		if got := rec.Reads(); !slices.Equal(got, wantReads) {
			t.Errorf("Grant %s read %q, want %q", id, got, wantReads)
		}
		if n := rec.Batches(); n != wantBatches {
			t.Errorf("Grant %s flushed %d batches, want %d", id, n, wantBatches)
		}
	}
	grant("first", []string{"GETSETELEM allow4"}, 1)
	grant("second", []string{"GETSETELEM allow4"}, 1)

	rec.Commit() // someone else's transaction
	grant("after-commit", append(slices.Clone(inspection), "GETSETELEM allow4"), 2)
	grant("after-repair", []string{"GETSETELEM allow4"}, 1)

	b.gen = func() (uint32, error) { return 0, errors.New("no generation") }
	grant("unreadable-1", append(slices.Clone(inspection), "GETSETELEM allow4"), 2)
	grant("unreadable-2", append(slices.Clone(inspection), "GETSETELEM allow4"), 2)
	b.gen = rec.Generation
	grant("readable", append(slices.Clone(inspection), "GETSETELEM allow4"), 2)

	rec.Reset()
	if _, err := b.EnsureBase(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.Reads(); !slices.Equal(got, inspection) {
		t.Errorf("EnsureBase with an unchanged generation read %q, want the inspection %q", got, inspection)
	}
}

// A Grant for a source that has no element reads nothing before its
// batch while the generation shows only this backend's batches: the
// backend knows the set's sources from its last read and its own
// batches. A source with an element, a foreign commit, a failed read of
// the generation or a teardown bring the read back.
func TestNetlinkGrantSkipsReadForNewSource(t *testing.T) {
	b, rec := recordedNFT()
	ctx := context.Background()
	if err := b.Setup(ctx, []knock.Port{tcp(22)}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	inspection := []string{"GETTABLE"}
	read := []string{"GETSETELEM allow4"}
	grant := func(id, src string, wantReads []string) {
		t.Helper()
		rec.Reset()
		if err := b.Grant(ctx, mkGrant(id, netip.MustParseAddr(src), now.Add(time.Minute), tcp(22)), now); err != nil {
			t.Fatal(err)
		}
		if got := rec.Reads(); !slices.Equal(got, wantReads) {
			t.Errorf("Grant %s for %s read %q, want %q", id, src, got, wantReads)
		}
		if n := rec.Batches(); n != 1+boolInt(len(wantReads) > 0 && wantReads[0] == "GETTABLE") {
			t.Errorf("Grant %s flushed %d batches", id, n)
		}
	}
	grant("a", "203.0.113.1", read) // nothing known yet
	grant("b", "203.0.113.2", nil)  // a new source: only adds
	grant("c", "203.0.113.3", nil)
	grant("b2", "203.0.113.2", read) // .2 has an element: replace it
	// The IPv6 set was never read.
	rec.Reset()
	if err := b.Grant(ctx, mkGrant("v6", netip.MustParseAddr("2001:db8::1"), now.Add(time.Minute), tcp(22)), now); err != nil {
		t.Fatal(err)
	}
	if got := rec.Reads(); !slices.Equal(got, []string{"GETSETELEM allow6"}) {
		t.Errorf("first IPv6 Grant read %q", got)
	}

	rec.Commit() // someone else's transaction: it may have added anything
	grant("d", "203.0.113.4", append(slices.Clone(inspection), read...))
	grant("e", "203.0.113.5", nil)

	// A revoke removes the source's element: a new grant for it only adds.
	rec.Reset()
	if err := b.Revoke(ctx, Grant{ID: "e", Src: netip.MustParseAddr("203.0.113.5")}); err != nil {
		t.Fatal(err)
	}
	grant("e2", "203.0.113.5", nil)

	b.gen = func() (uint32, error) { return 0, errors.New("no generation") }
	grant("f", "203.0.113.6", append(slices.Clone(inspection), read...))
	b.gen = rec.Generation

	if err := b.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	grant("g", "203.0.113.7", append(slices.Clone(inspection), read...))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestNetlinkTeardown(t *testing.T) {
	b, rec := recordedNFT()
	if err := b.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	golden(t, rec, "teardown")
}
