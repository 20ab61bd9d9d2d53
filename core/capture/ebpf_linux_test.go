package capture

import (
	"encoding/binary"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// The eBPF program is tested in the kernel with BPF_PROG_TEST_RUN: no
// socket, no namespace, but the kernel's verifier and the kernel running
// it. For a socket filter the kernel strips an Ethernet header from the
// test input (eth_type_trans) before the program sees it, so every input
// is the frame behind 14 bytes of such a header.

// testFilter is an eBPF filter loaded for tests, with its verdict on a
// frame.
type testFilter struct {
	f    *ebpfFilter
	link LinkType
}

func loadTestFilter(tb testing.TB, spec FilterSpec, link LinkType) *testFilter {
	tb.Helper()
	netnstest.RequireRoot(tb)
	f, err := newEBPFFilter(link, mustNormalize(tb, spec), nil)
	if err != nil {
		tb.Fatalf("newEBPFFilter: %v", err)
	}
	tb.Cleanup(f.close)
	return &testFilter{f: f, link: link}
}

// testRunHeader is what the kernel strips from a test input. Its
// EtherType is the local experimental one, so the kernel does not look
// at what follows as an IP header (it refuses a short one).
var testRunHeader = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0xb5}

func (tf *testFilter) run(tb testing.TB, frame []byte) bool {
	tb.Helper()
	ret, _, err := tf.f.prog.Test(append(append([]byte(nil), testRunHeader...), frame...))
	if err != nil {
		tb.Fatalf("BPF_PROG_TEST_RUN of a %d-byte frame: %v", len(frame), err)
	}
	switch ret {
	case 0:
		return false
	case snapLen:
		return true
	}
	tb.Fatalf("eBPF filter returned %d", ret)
	return false
}

// ipv6Chain returns s (IPv6, no extension headers) as an IP packet with
// n destination-options headers between the IPv6 header and TCP or UDP.
func ipv6Chain(tb testing.TB, s rawsend.Spec, n int) []byte {
	tb.Helper()
	pkt := rawFrame(tb, s)
	hdr, rest := append([]byte(nil), pkt[:40]...), pkt[40:]
	next := hdr[6]
	var chain []byte
	for i := n - 1; i >= 0; i-- {
		// Next header, length 0 (8 octets), one PadN option of 4 bytes.
		chain = append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, chain...)
		next = 60
	}
	hdr[6] = next
	binary.BigEndian.PutUint16(hdr[4:], uint16(len(rest)+len(chain)))
	return append(append(hdr, chain...), rest...)
}

// chainFrame is ipv6Chain framed for link.
func chainFrame(tb testing.TB, link LinkType, s rawsend.Spec, n int) []byte {
	ip := ipv6Chain(tb, s, n)
	full := frameFor(tb, link, s)
	plain := rawFrame(tb, s)
	return append(append([]byte(nil), full[:len(full)-len(plain)]...), ip...)
}

// TestEBPFFilterAgreesWithDecoder: on the grid of frames the classic
// filter is checked on, the eBPF filter keeps exactly the frames the
// decoder and the user-space check accept, IPv6 extension headers
// included (the classic filter keeps those all).
func TestEBPFFilterAgreesWithDecoder(t *testing.T) {
	set := newSpecSet(mustNormalize(t, testSpec))
	dsts := []netip.Addr{srv4, target4, oth4, srv6, target6, oth6}
	ports := []uint16{7000, 8000, 9000, 22}
	for _, link := range allLinks {
		tf := loadTestFilter(t, testSpec, link)
		dec := NewDecoder(link)
		n, kept := 0, 0
		for _, dst := range dsts {
			src := cli4
			if dst.Is6() {
				src = cli6
			}
			for _, port := range ports {
				for _, base := range []rawsend.Spec{syn(src, dst, port), udp(src, dst, port)} {
					for _, mod := range []func(*rawsend.Spec){
						func(*rawsend.Spec) {},
						func(s *rawsend.Spec) { s.VLANs = []uint16{7} },
						func(s *rawsend.Spec) { s.VLANs = []uint16{7, 8} },
						func(s *rawsend.Spec) { s.HopByHop = s.DstIP.Is6() },
						func(s *rawsend.Spec) { s.MoreFragments = true },
						func(s *rawsend.Spec) { s.FragOffset = 2 },
						func(s *rawsend.Spec) { s.HopByHop, s.MoreFragments = s.DstIP.Is6(), true },
					} {
						s := with(base, mod)
						if link == LinkRawIP && len(s.VLANs) > 0 {
							continue
						}
						frame := frameFor(t, link, s)
						kernel := tf.run(t, frame)
						pkt, ok := dec.Decode(frame)
						user := ok && set.has(pkt)
						if kernel != user {
							t.Errorf("%s: %+v: eBPF filter keeps it %v, decoder and spec %v", link, s, kernel, user)
						}
						n++
						if kernel {
							kept++
						}
					}
				}
			}
		}
		t.Logf("%s: %d frames compared, %d kept", link, n, kept)
	}
}

func TestEBPFFilterVerdicts(t *testing.T) {
	vlan := func(ids ...uint16) func(*rawsend.Spec) { return func(s *rawsend.Spec) { s.VLANs = ids } }
	eth := []LinkType{LinkEthernet, LinkSLL}
	tests := []struct {
		name   string
		frame  func(tb testing.TB, link LinkType) []byte
		accept bool
		links  []LinkType
	}{
		// The classic filter's limit, kept: a frame with three in-line
		// tags is dropped (the kernel strips the outer tag of a real
		// three-deep stack into metadata).
		{"v4 three in-line tags", func(tb testing.TB, l LinkType) []byte {
			return frameFor(tb, l, with(syn(cli4, srv4, 7000), vlan(1, 2, 3)))
		}, false, eth},
		{"v6 qinq", func(tb testing.TB, l LinkType) []byte {
			return frameFor(tb, l, with(udp(cli6, srv6, 8000), vlan(1, 2)))
		}, true, eth},
		{"v6 eight extension headers, knock", func(tb testing.TB, l LinkType) []byte {
			return chainFrame(tb, l, syn(cli6, srv6, 7000), 8)
		}, true, nil},
		{"v6 seven extension headers, other port", func(tb testing.TB, l LinkType) []byte {
			return chainFrame(tb, l, syn(cli6, srv6, 22), 7)
		}, false, nil},
		// The last header the program walks is followed by a port check.
		{"v6 eight extension headers, other port", func(tb testing.TB, l LinkType) []byte {
			return chainFrame(tb, l, syn(cli6, srv6, 22), maxExtHeaders)
		}, false, nil},
		// Past maxExtHeaders the decoder decides: kept.
		{"v6 nine extension headers, other port", func(tb testing.TB, l LinkType) []byte {
			return chainFrame(tb, l, syn(cli6, srv6, 22), maxExtHeaders+1)
		}, true, nil},
		{"v6 nine extension headers, wrong dst", func(tb testing.TB, l LinkType) []byte {
			return chainFrame(tb, l, syn(cli6, oth6, 7000), maxExtHeaders+1)
		}, false, nil},
		{"v6 non-first fragment", func(tb testing.TB, l LinkType) []byte {
			return frameFor(tb, l, with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.FragOffset = 3 }))
		}, false, nil},
		{"v4 truncated before the ports", func(tb testing.TB, l LinkType) []byte {
			hdr := map[LinkType]int{LinkEthernet: 14, LinkSLL: 16, LinkRawIP: 0}[l]
			// The IPv4 header and three bytes of TCP: half the port.
			return frameFor(tb, l, syn(cli4, srv4, 7000))[:hdr+20+3]
		}, false, nil},
		{"not IP", func(tb testing.TB, l LinkType) []byte {
			f := frameFor(tb, l, syn(cli4, srv4, 7000))
			if l == LinkRawIP {
				f[0] = 0x50
			} else {
				off := 12
				if l == LinkSLL {
					off = 14
				}
				f[off], f[off+1] = 0x08, 0x06 // ARP
			}
			return f
		}, false, nil},
	}
	for _, link := range allLinks {
		tf := loadTestFilter(t, testSpec, link)
		for _, tc := range tests {
			if tc.links != nil && !slicesContains(tc.links, link) {
				continue
			}
			if got := tf.run(t, tc.frame(t, link)); got != tc.accept {
				t.Errorf("%s/%s: kept %v, want %v", link, tc.name, got, tc.accept)
			}
		}
	}
}

// TestEBPFFilterAtScale: the 10,000 knock ports on 1,000 IPv4 and
// 1,000 IPv6 addresses (and the other scale cases) are checked exactly:
// every knock kept, every random non-knock dropped, where the classic
// program lets a large share through.
func TestEBPFFilterAtScale(t *testing.T) {
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	for _, c := range scaleCases {
		spec := scaleSpec(c, rng)
		set := newSpecSet(mustNormalize(t, spec))
		tf := loadTestFilter(t, spec, LinkEthernet)
		src := func(dst netip.Addr) netip.Addr {
			if dst.Is4() {
				return cli4
			}
			return cli6
		}
		for _, port := range spec.Ports {
			dst := spec.Dsts[rng.Intn(len(spec.Dsts))]
			pkt := knock.Packet{Src: src(dst), Dst: dst, Port: port.Num, Proto: port.Proto}
			if !tf.run(t, packetFrame(t, LinkEthernet, pkt)) {
				t.Fatalf("%s: knock %v dropped", c.name, pkt)
			}
		}
		for _, dst := range spec.Dsts {
			port := spec.Ports[rng.Intn(len(spec.Ports))]
			pkt := knock.Packet{Src: src(dst), Dst: dst, Port: port.Num, Proto: port.Proto}
			if !tf.run(t, packetFrame(t, LinkEthernet, pkt)) {
				t.Fatalf("%s: knock %v dropped", c.name, pkt)
			}
		}
		others, kept := 0, 0
		for i := 0; i < 2000; i++ {
			pkt := randomPacket(rng, spec)
			got := tf.run(t, packetFrame(t, LinkEthernet, pkt))
			if got != set.has(pkt) {
				t.Fatalf("%s: %v: eBPF keeps it %v, the spec says %v", c.name, pkt, got, set.has(pkt))
			}
			if !set.has(pkt) {
				others++
				if got {
					kept++
				}
			}
		}
		t.Logf("%s: %d eBPF instructions; %d of %d random non-knocks kept", c.name, tf.f.insns, kept, others)
	}
}

// TestEBPFFilterUpdatesInPlace: map updates change the verdicts of the
// loaded program; a spec that outgrows the maps is refused by fits.
func TestEBPFFilterUpdatesInPlace(t *testing.T) {
	small := FilterSpec{Dsts: []netip.Addr{srv4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}}
	tf := loadTestFilter(t, small, LinkEthernet)
	prog := tf.f.prog
	check := func(step string, want map[knock.Packet]bool) {
		t.Helper()
		for pkt, keep := range want {
			if got := tf.run(t, packetFrame(t, LinkEthernet, pkt)); got != keep {
				t.Errorf("%s: %v kept %v, want %v", step, pkt, got, keep)
			}
		}
	}
	k := func(dst netip.Addr, port uint16, proto knock.Proto) knock.Packet {
		src := cli4
		if dst.Is6() {
			src = cli6
		}
		return knock.Packet{Src: src, Dst: dst, Port: port, Proto: proto}
	}
	check("start", map[knock.Packet]bool{
		k(srv4, 7000, knock.TCP): true, k(srv4, 7001, knock.TCP): false, k(srv6, 7000, knock.TCP): false,
	})
	bigger := FilterSpec{Dsts: []netip.Addr{srv4, srv6, oth4}, Ports: []knock.Port{{Num: 7001, Proto: knock.TCP}, {Num: 7000, Proto: knock.UDP}}}
	n := mustNormalize(t, bigger)
	if !tf.f.fits(n) {
		t.Fatal("a three-address spec does not fit the smallest maps")
	}
	if err := tf.f.update(n); err != nil {
		t.Fatalf("update: %v", err)
	}
	if tf.f.prog != prog {
		t.Fatal("update replaced the program")
	}
	check("after update", map[knock.Packet]bool{
		k(srv4, 7000, knock.TCP): false, k(srv4, 7001, knock.TCP): true, k(srv6, 7001, knock.TCP): true,
		k(oth4, 7000, knock.UDP): true, k(srv4, 7000, knock.UDP): true, k(oth6, 7001, knock.TCP): false,
	})
	if err := tf.f.update(mustNormalize(t, FilterSpec{})); err != nil {
		t.Fatalf("update to empty: %v", err)
	}
	check("empty", map[knock.Packet]bool{k(srv4, 7001, knock.TCP): false, k(srv6, 7001, knock.TCP): false})

	var huge FilterSpec
	for i := 0; i < minMapEntries+1; i++ {
		huge.Ports = append(huge.Ports, knock.Port{Num: uint16(1000 + i), Proto: knock.TCP})
	}
	huge.Dsts = []netip.Addr{srv4}
	if tf.f.fits(mustNormalize(t, huge)) {
		t.Fatalf("%d ports fit maps of %d entries", len(huge.Ports), minMapEntries)
	}
}

func TestMapCapacity(t *testing.T) {
	for _, c := range []struct {
		n    int
		want uint32
	}{{0, 256}, {1, 256}, {127, 256}, {128, 256}, {129, 512}, {256, 512}, {257, 1024}, {10000, 32768}} {
		if got := mapCapacity(c.n); got != c.want {
			t.Errorf("mapCapacity(%d) = %d, want %d", c.n, got, c.want)
		}
		if got := mapCapacity(c.n); int(got) < c.n {
			t.Errorf("mapCapacity(%d) = %d is too small", c.n, got)
		}
	}
}

// FuzzEBPFFilter runs arbitrary frames through the eBPF filter in the
// kernel and through the decoder and the user-space check: the kernel
// must never drop a frame user space would deliver (a lost knock; the
// one exception, as in the classic filter, is a frame with more than two
// in-line VLAN tags, which the kernel never hands a packet socket: it
// strips the outer tag into metadata), and
// on a frame the decoder reads as TCP or UDP over IP with at most two
// in-line tags and maxExtHeaders extension headers, the two agree
// exactly. Seeds are the knock frames of every link type, whole and cut.
func FuzzEBPFFilter(f *testing.F) {
	netnstest.RequireRoot(f)
	for _, link := range allLinks {
		for _, tc := range knockSpecs {
			if link == LinkRawIP && len(tc.spec.VLANs) > 0 {
				continue
			}
			fr := frameFor(f, link, tc.spec)
			f.Add(uint8(link), fr)
			f.Add(uint8(link), fr[:len(fr)/2])
		}
		f.Add(uint8(link), chainFrame(f, link, syn(cli6, srv6, 7000), maxExtHeaders))
	}
	filters := map[LinkType]*testFilter{}
	for _, link := range allLinks {
		filters[link] = loadTestFilter(f, testSpec, link)
	}
	set := newSpecSet(mustNormalize(f, testSpec))
	f.Fuzz(func(t *testing.T, linkByte uint8, frame []byte) {
		link := allLinks[int(linkByte)%len(allLinks)]
		if len(frame) > 1500 {
			t.Skip("BPF_PROG_TEST_RUN takes a page at most; the program reads only headers")
		}
		pkt, ok := NewDecoder(link).Decode(frame)
		user := ok && set.has(pkt)
		kernel := filters[link].run(t, frame)
		if user && !kernel && inlineTags(link, frame) <= 2 {
			t.Fatalf("%s: the eBPF filter drops %v, which user space delivers: % x", link, pkt, frame)
		}
		if kernel && !user && ok && simpleFrame(link, frame) {
			t.Fatalf("%s: the eBPF filter keeps %v, not a knock: % x", link, pkt, frame)
		}
	})
}

// inlineTags counts the VLAN tags in a frame's link header.
func inlineTags(link LinkType, frame []byte) int {
	off := map[LinkType]int{LinkEthernet: 12, LinkSLL: 14}[link]
	if off == 0 {
		return 0
	}
	tags := 0
	for len(frame) >= off+2 && (binary.BigEndian.Uint16(frame[off:]) == 0x8100 || binary.BigEndian.Uint16(frame[off:]) == 0x88a8) {
		tags++
		off += 4
	}
	return tags
}

// simpleFrame reports whether a frame the decoder read as a packet is
// one the eBPF filter decides exactly: at most two in-line VLAN tags, an
// IPv4 header of at least 20 bytes, at most maxExtHeaders IPv6 extension
// headers. (Past those the filter keeps what it cannot judge.)
func simpleFrame(link LinkType, frame []byte) bool {
	off := 0
	if link != LinkRawIP {
		tags := inlineTags(link, frame)
		if tags > 2 {
			return false
		}
		off = map[LinkType]int{LinkEthernet: 12, LinkSLL: 14}[link] + 4*tags + 2
	}
	if len(frame) <= off {
		return false
	}
	switch frame[off] >> 4 {
	case 4:
		return frame[off]&0x0f >= 5
	case 6:
		if len(frame) < off+40 {
			return false
		}
		next, at, n := frame[off+6], off+40, 0
		for next == 0 || next == 43 || next == 44 || next == 60 {
			if n++; n > maxExtHeaders || len(frame) < at+8 {
				return false
			}
			if next == 44 {
				next, at = frame[at], at+8
			} else {
				next, at = frame[at], at+8*(int(frame[at+1])+1)
			}
		}
		return true
	}
	return false
}
