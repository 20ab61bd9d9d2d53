package capture

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

var (
	target4 = netip.MustParseAddr("192.0.2.5")
	target6 = netip.MustParseAddr("2001:db8::5")

	testSpec = FilterSpec{
		Dsts: []netip.Addr{srv4, srv6, target4, target6},
		Ports: []knock.Port{
			{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}, {Num: 9000, Proto: knock.TCP},
		},
	}
)

// vmRun runs the filter body (no packet-type prefix) over a frame.
func vmRun(tb testing.TB, prog []bpf.Instruction, frame []byte) int {
	tb.Helper()
	vm, err := bpf.NewVM(prog)
	if err != nil {
		tb.Fatalf("bpf.NewVM: %v", err)
	}
	return runVM(tb, vm, frame)
}

func runVM(tb testing.TB, vm *bpf.VM, frame []byte) int {
	tb.Helper()
	n, err := vm.Run(frame)
	if err != nil {
		tb.Fatalf("vm.Run: %v", err)
	}
	return n
}

func vmBody(tb testing.TB, spec FilterSpec, link LinkType) []bpf.Instruction {
	tb.Helper()
	prog, _, err := filterProgram(spec, link, false, MaxInstructions)
	if err != nil {
		tb.Fatalf("filterProgram: %v", err)
	}
	return prog
}

func TestFilterVerdicts(t *testing.T) {
	vlan := func(ids ...uint16) func(*rawsend.Spec) { return func(s *rawsend.Spec) { s.VLANs = ids } }
	tests := []struct {
		name   string
		spec   rawsend.Spec
		accept bool
		links  []LinkType // nil: every link type
	}{
		{"v4 tcp to knock port", syn(cli4, srv4, 7000), true, nil},
		{"v4 second tcp port", syn(cli4, srv4, 9000), true, nil},
		{"v4 udp to knock port", udp(cli4, srv4, 8000), true, nil},
		{"v4 to target", syn(cli4, target4, 7000), true, nil},
		{"v4 spoofed source", syn(oth4, srv4, 7000), true, nil},
		{"v4 ack only (flags are the matcher's)", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.Flags = knock.ACK }), true, nil},
		{"v6 tcp to knock port", syn(cli6, srv6, 9000), true, nil},
		{"v6 udp to target", udp(cli6, target6, 8000), true, nil},
		{"v4 wrong dst", syn(cli4, oth4, 7000), false, nil},
		{"v4 source is a dst, dst is not", syn(srv4, oth4, 7000), false, nil},
		{"v6 wrong dst", syn(cli6, oth6, 7000), false, nil},
		{"v4 wrong port", syn(cli4, srv4, 7001), false, nil},
		{"v6 wrong port", udp(cli6, srv6, 8001), false, nil},
		{"udp to a tcp-only port", udp(cli4, srv4, 7000), false, nil},
		{"tcp to a udp-only port", syn(cli4, srv4, 8000), false, nil},
		{"v6 udp to a tcp-only port", udp(cli6, srv6, 9000), false, nil},
		{"v4 first fragment", with(udp(cli4, srv4, 8000), func(s *rawsend.Spec) { s.MoreFragments = true }), true, nil},
		{"v4 non-first fragment", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.FragOffset = 1 }), false, nil},
		{"v4 last fragment", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.FragOffset = 100 }), false, nil},
		{"v4 vlan", with(syn(cli4, srv4, 7000), vlan(10)), true, []LinkType{LinkEthernet, LinkSLL}},
		{"v6 vlan", with(udp(cli6, srv6, 8000), vlan(10)), true, []LinkType{LinkEthernet, LinkSLL}},
		{"v4 qinq", with(syn(cli4, srv4, 7000), vlan(10, 20)), true, []LinkType{LinkEthernet, LinkSLL}},
		{"v4 vlan wrong port", with(syn(cli4, srv4, 7001), vlan(10)), false, []LinkType{LinkEthernet, LinkSLL}},
		{"v4 three in-line tags", with(syn(cli4, srv4, 7000), vlan(1, 2, 3)), false, []LinkType{LinkEthernet, LinkSLL}},
		// cBPF cannot walk extension headers: these pass on the address
		// alone and the decoder decides.
		{"v6 hop-by-hop, knock port", with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.HopByHop = true }), true, nil},
		{"v6 hop-by-hop, other port", with(syn(cli6, srv6, 22), func(s *rawsend.Spec) { s.HopByHop = true }), true, nil},
		{"v6 fragment header", with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) { s.MoreFragments = true }), true, nil},
		{"v6 hop-by-hop, wrong dst", with(syn(cli6, oth6, 7000), func(s *rawsend.Spec) { s.HopByHop = true }), false, nil},
		{"v4 payload looks like a knock", with(udp(cli4, oth4, 53), func(s *rawsend.Spec) {
			s.Payload = rawFrameNoTB(syn(cli4, srv4, 7000))
		}), false, nil},
	}
	for _, link := range allLinks {
		prog := vmBody(t, testSpec, link)
		for _, tc := range tests {
			if tc.links != nil && !slicesContains(tc.links, link) {
				continue
			}
			t.Run(link.String()+"/"+tc.name, func(t *testing.T) {
				got := vmRun(t, prog, frameFor(t, link, tc.spec))
				want := 0
				if tc.accept {
					want = snapLen
				}
				if got != want {
					t.Fatalf("filter returned %d, want %d", got, want)
				}
			})
		}
	}
}

func slicesContains(ls []LinkType, l LinkType) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

// TestFilterAgreesWithDecoder runs a grid of frames through the kernel
// filter and through decoder + user-space check. The kernel filter must
// never drop a knock the user-space path accepts (that would lose knocks);
// it may pass extra frames only where documented: IPv6 extension headers.
func TestFilterAgreesWithDecoder(t *testing.T) {
	set := newSpecSet(mustNormalize(t, testSpec))
	dsts := []netip.Addr{srv4, target4, oth4, srv6, target6, oth6}
	ports := []uint16{7000, 8000, 9000, 22}
	for _, link := range allLinks {
		prog := vmBody(t, testSpec, link)
		dec := NewDecoder(link)
		n := 0
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
					} {
						s := with(base, mod)
						if link == LinkRawIP && len(s.VLANs) > 0 {
							continue
						}
						frame := frameFor(t, link, s)
						kernel := vmRun(t, prog, frame) != 0
						pkt, ok := dec.Decode(frame)
						user := ok && set.has(pkt)
						ext := s.DstIP.Is6() && (s.HopByHop || s.MoreFragments || s.FragOffset != 0)
						switch {
						case user && !kernel:
							t.Errorf("%s: %+v: knock dropped by the kernel filter", link, s)
						case kernel && !user && !ext:
							t.Errorf("%s: %+v: kernel filter passes a non-knock", link, s)
						}
						n++
					}
				}
			}
		}
		t.Logf("%s: %d frames compared", link, n)
	}
}

func mustNormalize(tb testing.TB, spec FilterSpec) normSpec {
	n, err := normalize(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestFilterEmptyAndPartialSpecs(t *testing.T) {
	frames := []rawsend.Spec{syn(cli4, srv4, 7000), udp(cli6, srv6, 8000)}
	tests := []struct {
		name string
		spec FilterSpec
		want []bool // per frame
	}{
		{"empty", FilterSpec{}, []bool{false, false}},
		{"no ports", FilterSpec{Dsts: []netip.Addr{srv4, srv6}}, []bool{false, false}},
		{"no addresses", FilterSpec{Ports: testSpec.Ports}, []bool{false, false}},
		{"v4 only", FilterSpec{Dsts: []netip.Addr{srv4}, Ports: testSpec.Ports}, []bool{true, false}},
		{"v6 only", FilterSpec{Dsts: []netip.Addr{srv6}, Ports: testSpec.Ports}, []bool{false, true}},
		{"tcp only", FilterSpec{Dsts: []netip.Addr{srv4, srv6}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.TCP}}}, []bool{true, false}},
		{"udp only", FilterSpec{Dsts: []netip.Addr{srv4, srv6}, Ports: []knock.Port{{Num: 7000, Proto: knock.UDP}, {Num: 8000, Proto: knock.UDP}}}, []bool{false, true}},
		{"v4-mapped and zoned addresses", FilterSpec{
			Dsts:  []netip.Addr{netip.MustParseAddr("::ffff:10.77.0.1"), srv6.WithZone("sesame0")},
			Ports: testSpec.Ports,
		}, []bool{true, true}},
		{"duplicates", FilterSpec{
			Dsts:  []netip.Addr{srv4, srv4, srv6, srv6},
			Ports: append(append([]knock.Port{}, testSpec.Ports...), testSpec.Ports...),
		}, []bool{true, true}},
	}
	for _, link := range allLinks {
		for _, tc := range tests {
			t.Run(link.String()+"/"+tc.name, func(t *testing.T) {
				prog := vmBody(t, tc.spec, link)
				set := newSpecSet(mustNormalize(t, tc.spec))
				for i, s := range frames {
					frame := frameFor(t, link, s)
					if got := vmRun(t, prog, frame) != 0; got != tc.want[i] {
						t.Errorf("kernel filter on %v: %v, want %v", want(s), got, tc.want[i])
					}
					pkt, _ := NewDecoder(link).Decode(frame)
					if got := set.has(pkt); got != tc.want[i] {
						t.Errorf("user-space check on %v: %v, want %v", pkt, got, tc.want[i])
					}
				}
			})
		}
	}
}

// TestFilterLargeSpecs checks lists longer than a conditional jump can
// span: every listed port and address still passes, neighbours do not.
func TestFilterLargeSpecs(t *testing.T) {
	var spec FilterSpec
	for i := range 600 {
		spec.Ports = append(spec.Ports, knock.Port{Num: uint16(10000 + 2*i), Proto: knock.TCP})
		spec.Ports = append(spec.Ports, knock.Port{Num: uint16(20000 + 2*i), Proto: knock.UDP})
	}
	for i := range 300 {
		spec.Dsts = append(spec.Dsts, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	for i := range 40 {
		spec.Dsts = append(spec.Dsts, netip.AddrFrom16([16]byte{0xfd, 0x77, 15: byte(i + 1)}))
	}
	for _, link := range allLinks {
		prog := vmBody(t, spec, link)
		t.Logf("%s: %d ports, %d addresses: %d instructions", link, len(spec.Ports), len(spec.Dsts), len(prog))
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		check := func(s rawsend.Spec, wantAccept bool) {
			t.Helper()
			if got := runVM(t, vm, frameFor(t, link, s)) != 0; got != wantAccept {
				t.Fatalf("%s: %v: accepted=%v, want %v", link, want(s), got, wantAccept)
			}
		}
		for _, p := range spec.Ports {
			mk := syn
			if p.Proto == knock.UDP {
				mk = udp
			}
			check(mk(cli4, spec.Dsts[0], p.Num), true)
			check(mk(cli4, spec.Dsts[0], p.Num+1), false)
		}
		for _, d := range spec.Dsts {
			src := cli4
			if d.Is6() {
				src = cli6
			}
			check(syn(src, d, 10000), true)
			check(syn(src, d.Next(), 10000), slicesContainsAddr(spec.Dsts, d.Next()))
		}
	}
}

func slicesContainsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func TestFilterErrors(t *testing.T) {
	tests := []struct {
		name string
		spec FilterSpec
		link LinkType
	}{
		{"bad protocol", FilterSpec{Dsts: []netip.Addr{srv4}, Ports: []knock.Port{{Num: 1, Proto: 1}}}, LinkEthernet},
		{"invalid address", FilterSpec{Dsts: []netip.Addr{{}}, Ports: testSpec.Ports}, LinkEthernet},
		{"unknown link", testSpec, LinkType(9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := BuildFilter(tc.spec, tc.link); err == nil {
				t.Fatal("BuildFilter succeeded")
			}
		})
	}
}

// TestFilterPrefix checks what the VM cannot run: the full program is the
// PACKET_OUTGOING drop followed by the body, and assembles.
func TestFilterPrefix(t *testing.T) {
	for _, link := range allLinks {
		full, exact, err := BuildFilter(testSpec, link)
		if err != nil || !exact {
			t.Fatalf("BuildFilter: exact %v, %v", exact, err)
		}
		want, err := bpf.Assemble(append([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipFalse: 1},
			bpf.RetConstant{Val: 0},
		}, vmBody(t, testSpec, link)...))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(full) != fmt.Sprint(want) {
			t.Fatalf("%s: BuildFilter is not prefix+body:\n%v\n%v", link, full, want)
		}
		t.Logf("%s: typical spec (%d addresses, %d ports): %d instructions", link, len(testSpec.Dsts), len(testSpec.Ports), len(full))
	}
}

// TestFilterMatchesLibpcap runs libpcap's own program for the IPv4 part of
// a spec (from tcpdump -dd) and ours over the same untagged frames; the
// verdicts must agree. Skips when tcpdump is not installed.
func TestFilterMatchesLibpcap(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed (apt-get install tcpdump)")
	}
	spec := FilterSpec{Dsts: []netip.Addr{srv4, target4}, Ports: testSpec.Ports}
	expr := "(dst host 10.77.0.1 or dst host 192.0.2.5) and (tcp dst port 7000 or tcp dst port 9000 or udp dst port 8000)"
	out, err := exec.Command(tcpdump, "-dd", expr).Output()
	if err != nil {
		t.Skipf("tcpdump -dd: %v", err)
	}
	var raw []bpf.RawInstruction
	re := regexp.MustCompile(`\{ (0x[0-9a-f]+), (\d+), (\d+), (0x[0-9a-f]+) \}`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		op, _ := strconv.ParseUint(m[1], 0, 16)
		jt, _ := strconv.ParseUint(m[2], 0, 8)
		jf, _ := strconv.ParseUint(m[3], 0, 8)
		k, _ := strconv.ParseUint(m[4], 0, 32)
		raw = append(raw, bpf.RawInstruction{Op: uint16(op), Jt: uint8(jt), Jf: uint8(jf), K: uint32(k)})
	}
	if len(raw) == 0 {
		t.Fatalf("no instructions in tcpdump output:\n%s", out)
	}
	libpcap, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("cannot disassemble libpcap's program: %v", libpcap)
	}
	ours := vmBody(t, spec, LinkEthernet)
	var frames []rawsend.Spec
	for _, dst := range []netip.Addr{srv4, target4, oth4, srv6} {
		src := cli4
		if dst.Is6() {
			src = cli6
		}
		for _, port := range []uint16{7000, 8000, 9000, 22} {
			for _, s := range []rawsend.Spec{syn(src, dst, port), udp(src, dst, port)} {
				frames = append(frames, s,
					with(s, func(s *rawsend.Spec) { s.FragOffset = 5 }),
					with(s, func(s *rawsend.Spec) { s.MoreFragments = true }))
			}
		}
	}
	for _, s := range frames {
		if s.DstIP.Is6() && s.FragOffset != 0 {
			continue // our filter passes IPv6 extension headers on; libpcap's has no v6 address to match
		}
		frame := ethFrame(t, s)
		if got, lp := vmRun(t, ours, frame) != 0, vmRun(t, libpcap, frame) != 0; got != lp {
			t.Errorf("%v (frag %d, mf %v): ours %v, libpcap %v", want(s), s.FragOffset, s.MoreFragments, got, lp)
		}
	}
}
