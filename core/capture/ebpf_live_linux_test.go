package capture

import (
	"math/rand"
	"net/netip"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// debianOptmem is net.core.optmem_max on Debian 12's kernel: a socket's
// filter must fit in it. Only about a thousand classic instructions do.
const debianOptmem = 20480

// trySetOptmem sets optmem_max in ns where the kernel keeps it per
// namespace (6.9 and later) and reports whether it could.
func trySetOptmem(t *testing.T, ns *netnstest.NS, bytes int) bool {
	t.Helper()
	if _, err := ns.Run("sh", "-c", "echo "+strconv.Itoa(bytes)+" > /proc/sys/net/core/optmem_max"); err != nil {
		t.Logf("net.core.optmem_max is not per network namespace here (before Linux 6.9): running with the host's")
		return false
	}
	return true
}

// TestCaptureEBPFAtScale runs the 10,000 knock ports on 1,000
// IPv4 and 1,000 IPv6 addresses on a live socket, with Debian's default
// option memory: the eBPF filter delivers every knock and lets no other
// frame reach user space (its own counters show it dropped them), while
// a classic handle on the same interface, with the same spec, lets many
// through to its user-space check.
func TestCaptureEBPFAtScale(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	trySetOptmem(t, p.Server, debianOptmem)
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	spec := scaleSpec(scaleCases[1], rng)
	spec.Dsts = append(spec.Dsts, s4, s6)
	knocks := []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}}
	spec.Ports = append(spec.Ports, knocks...)
	set := newSpecSet(mustNormalize(t, spec))

	ebpfCap := startCaptureKind(t, p.Server, netnstest.ServerIf, spec, FilterEBPF)
	classic := startCaptureKind(t, p.Server, netnstest.ServerIf, spec, FilterClassic)
	est, cst := ebpfCap.h.Stats(), classic.h.Stats()
	t.Logf("eBPF filter: %d instructions; classic: %d instructions, exact %v", est.FilterInstructions, cst.FilterInstructions, cst.FilterExact)
	if !est.FilterExact || cst.FilterExact {
		t.Fatalf("eBPF exact %v, classic exact %v: want an exact eBPF filter and a coarser classic one", est.FilterExact, cst.FilterExact)
	}
	waitUnfilteredRead(t, ebpfCap.h)
	waitUnfilteredRead(t, classic.h)
	e0, c0 := ebpfCap.h.Stats(), classic.h.Stats()

	tx, mac := rawsend.ForPair(t, p)
	frame := func(pkt knock.Packet) rawsend.Spec {
		s := syn(pkt.Src, pkt.Dst, pkt.Port)
		if pkt.Proto == knock.UDP {
			s = udp(pkt.Src, pkt.Dst, pkt.Port)
		}
		s.SrcMAC, s.DstMAC = tx.MAC(), mac
		return s
	}
	// Unrelated traffic: the spec's addresses (and the server's), any
	// port the spec does not name.
	const unrelated = 3000
	for i := 0; i < unrelated; i++ {
		pkt := randomPacket(rng, spec)
		for set.has(pkt) {
			pkt.Port++
		}
		if err := tx.Send(frame(pkt)); err != nil {
			t.Fatal(err)
		}
	}
	var want []knock.Packet
	for _, dst := range []netip.Addr{s4, s6, spec.Dsts[0], spec.Dsts[1000]} {
		src := c4
		if dst.Is6() {
			src = c6
		}
		for _, k := range knocks {
			pkt := knock.Packet{Src: src, Dst: dst, Port: k.Num, Proto: k.Proto}
			if k.Proto == knock.TCP {
				pkt.Flags = knock.SYN
			}
			want = append(want, pkt)
			if err := tx.Send(frame(pkt)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sentinelFrame := frame(knock.Packet{Src: c4, Dst: s4, Port: sentinel, Proto: knock.UDP})
	sendSentinel := func() {
		if err := tx.Send(sentinelFrame); err != nil {
			t.Fatal(err)
		}
	}
	ebpfCap.expect(t, want, sendSentinel)
	classic.expect(t, want, func() {}) // the sentinel above reached it too

	e1, c1 := ebpfCap.h.Stats(), classic.h.Stats()
	eRead, cRead := e1.Read-e0.Read, c1.Read-c0.Read
	wantRead := uint64(len(want) + 1) // and the sentinel
	t.Logf("%d unrelated frames and %d knocks: eBPF handle read %d (filter dropped %d, kept %d), classic handle read %d",
		unrelated, len(want), eRead, e1.KernelDropped-e0.KernelDropped, e1.KernelKept-e0.KernelKept, cRead)
	if eRead != wantRead {
		t.Errorf("eBPF handle read %d frames, want the %d knocks only", eRead, wantRead)
	}
	if d := e1.KernelDropped - e0.KernelDropped; d < unrelated {
		t.Errorf("eBPF filter counted %d dropped frames, want at least the %d unrelated ones", d, unrelated)
	}
	if k := e1.KernelKept - e0.KernelKept; k != wantRead {
		t.Errorf("eBPF filter counted %d kept frames, want %d", k, wantRead)
	}
	// The classic program is coarse here: it must have let some of the
	// unrelated frames by, which is what the eBPF filter is for.
	if cRead <= wantRead {
		t.Errorf("classic handle read %d frames: the coarse program let nothing by, so this test shows nothing", cRead)
	}
}

// TestCaptureEBPFFollowsSetFilter: SetFilter changes the eBPF filter's
// maps in place (the same program stays on the socket) and the kernel's
// verdicts follow; a spec that outgrows the maps gets a new program, and
// the counters run on.
func TestCaptureEBPFFollowsSetFilter(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	c := startCapture(t, p.Server, netnstest.ServerIf, FilterSpec{
		Dsts:  []netip.Addr{s4},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}},
	})
	waitUnfilteredRead(t, c.h)
	progID := func() ebpf.ProgramID {
		c.h.filterMu.Lock()
		defer c.h.filterMu.Unlock()
		info, err := c.h.kern.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("no program ID from the kernel")
		}
		return id
	}
	id0 := progID()
	readSince := func(base Stats) uint64 { return c.h.Stats().Read - base.Read }
	sendSentinel := func() { sendUDP(t, p.Client, s4, sentinel) }

	// A door and an address added, a port removed.
	p.Server.MustRun("ip", "addr", "add", "10.77.0.5/24", "dev", netnstest.ServerIf)
	s4b := netip.MustParseAddr("10.77.0.5")
	next := FilterSpec{Dsts: []netip.Addr{s4, s4b, s6},
		Ports: []knock.Port{{Num: 7100, Proto: knock.TCP}, {Num: 7200, Proto: knock.UDP}, {Num: sentinel, Proto: knock.UDP}}}
	if err := c.h.SetFilter(next); err != nil {
		t.Fatal(err)
	}
	if id := progID(); id != id0 {
		t.Fatalf("SetFilter replaced the program (%d -> %d), want its maps updated in place", id0, id)
	}
	base := c.h.Stats()
	dialTCP(t, p.Client, s4, 7000)
	dialTCP(t, p.Client, s4b, 7100)
	sendUDP(t, p.Client, s6, 7200)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4b, 7100), udpKnock(c6, s6, 7200)}, sendSentinel)
	if got := readSince(base); got != 3 {
		t.Fatalf("read %d frames after SetFilter, want 3: the kernel still passes the removed port", got)
	}

	// Past the maps' capacity: a new program, attached in place.
	big := next
	for i := 0; i < minMapEntries; i++ {
		big.Ports = append(big.Ports, knock.Port{Num: uint16(20000 + i), Proto: knock.TCP})
	}
	dropped := c.h.Stats().KernelDropped
	if err := c.h.SetFilter(big); err != nil {
		t.Fatal(err)
	}
	if id := progID(); id == id0 {
		t.Fatal("a spec past the maps' capacity kept the old program")
	}
	base = c.h.Stats()
	if base.Filter != FilterEBPF || base.KernelDropped < dropped {
		t.Fatalf("after growing: filter %s, dropped %d (was %d)", base.Filter, base.KernelDropped, dropped)
	}
	dialTCP(t, p.Client, s4, 20000+minMapEntries-1)
	dialTCP(t, p.Client, s4, 7000)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 20000+minMapEntries-1)}, sendSentinel)
	if got := readSince(base); got != 2 {
		t.Fatalf("read %d frames after growing, want 2", got)
	}
}

// TestCaptureEBPFUpdateFailureFallsBack: when the eBPF filter's maps
// cannot be updated, SetFilter puts the classic program for the new spec
// on the socket instead (the kernel must never keep dropping a new
// knock), says why, and keeps to it.
func TestCaptureEBPFUpdateFailureFallsBack(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	c := startCapture(t, p.Server, netnstest.ServerIf, FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}})
	waitUnfilteredRead(t, c.h)
	// Break the ports map under the filter: its file descriptor closed,
	// every update fails.
	c.h.filterMu.Lock()
	c.h.kern.ports.Close()
	c.h.filterMu.Unlock()
	err := c.h.SetFilter(FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7100, Proto: knock.TCP}, {Num: sentinel, Proto: knock.UDP}}})
	if err != nil {
		t.Fatalf("SetFilter: %v", err)
	}
	st := c.h.Stats()
	if st.Filter != FilterClassic || st.EBPFErr == nil || !st.FilterExact {
		t.Fatalf("after a failed map update: filter %s, exact %v, eBPF error %v; want the exact classic filter and why", st.Filter, st.FilterExact, st.EBPFErr)
	}
	t.Logf("eBPF: %v", st.EBPFErr)
	dialTCP(t, p.Client, s4, 7000)
	dialTCP(t, p.Client, s4, 7100)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 7100)}, func() { sendUDP(t, p.Client, s4, sentinel) })
	if got := c.h.Stats().Read - st.Read; got != 2 {
		t.Errorf("read %d frames after the fallback, want the knock and the sentinel", got)
	}
}
