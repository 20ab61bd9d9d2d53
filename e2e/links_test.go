package e2e

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// knockd reads its addresses once and exits on a capture error; sesamed
// follows link and address changes.

func TestLinkDownUpKeepsKnocksWorking(t *testing.T) {
	e := newEnv(t, baseConf)
	e.pair.Server.MustRun("ip", "link", "set", netnstest.ServerIf, "down")
	e.d.waitLog("capture on sesame0 ended", 5*time.Second)
	e.pair.Server.MustRun("ip", "link", "set", netnstest.ServerIf, "up")
	e.d.waitLog("capturing on sesame0 again", 10*time.Second)
	e.knock("7000", "8000", "9000")
	if got := e.barrier(); !slices.Equal(got, []string{client + " base"}) {
		t.Errorf("after link down/up opened %q", got)
	}
}

func TestAddressChangesFollowTheFilter(t *testing.T) {
	e := newEnv(t, baseConf)
	added := netip.MustParseAddr("10.77.0.9")
	// /32: a secondary in the /24 would go with the primary deleted below.
	e.pair.Server.MustRun("ip", "addr", "add", added.String()+"/32", "dev", netnstest.ServerIf)
	// Knocks to the new address count once the daemon has seen it; give
	// netlink a moment by retrying the whole sequence.
	ok := poll(5*time.Second, func() bool {
		for _, p := range []uint16{7000, 8000, 9000} {
			e.raw.send(rawsend.Spec{DstIP: added, DstPort: p, Proto: knock.TCP, Flags: knock.SYN})
		}
		return slices.Contains(e.d.opens(), client+" base")
	})
	if !ok {
		t.Fatalf("knocks to an address added after start do not open; output:\n%s", e.d.out.String())
	}
	// The old address removed: knocks to it are no longer seen.
	before := len(e.d.opens())
	e.barrierDst = added
	e.pair.Server.MustRun("ip", "addr", "del", netnstest.ServerAddr4.String()+"/24", "dev", netnstest.ServerIf)
	time.Sleep(300 * time.Millisecond)
	for _, p := range []uint16{7000, 8000, 9000} {
		e.raw.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.0.5"), DstIP: netnstest.ServerAddr4, DstPort: p, Proto: knock.TCP, Flags: knock.SYN})
	}
	e.barrier()
	for _, o := range e.d.opens()[before:] {
		if o == "10.77.0.5 base" {
			t.Error("knocks to a removed address still open the door")
		}
	}
}

func TestInterfaceCreatedAfterStart(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	srv := netnstest.NewNS(t, "srv")
	cli := netnstest.NewNS(t, "cli")
	conf := `[options]
	Interface = late0
[base]
	sequence = 7000,8000,9000
	tcpflags = syn
`
	d := startSesamed(t, srv, conf)
	d.waitLog("ready without a capture on late0", 5*time.Second)
	srv.MustRun("ip", "link", "add", "late0", "type", "veth", "peer", "name", "late1", "netns", cli.Name)
	srv.MustRun("ip", "addr", "add", "10.78.0.1/24", "dev", "late0")
	cli.MustRun("ip", "addr", "add", "10.78.0.2/24", "dev", "late1")
	srv.MustRun("ip", "link", "set", "late0", "up")
	cli.MustRun("ip", "link", "set", "late1", "up")
	d.waitLog("capturing on late0 now", 10*time.Second)
	ok := poll(5*time.Second, func() bool {
		cli.Run("knock", "10.78.0.1", "7000", "8000", "9000")
		return slices.Contains(d.opens(), "10.78.0.2 base")
	})
	if !ok {
		t.Fatalf("no open on an interface created after start; output:\n%s", d.out.String())
	}
}
