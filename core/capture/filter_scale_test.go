package capture

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// Specs past what an exact filter can hold in 4096 instructions: the
// issue's 150 doors of 30 ports, and the 10,000 knock ports on 1,000
// local addresses issue 16 asks for.

type scaleCase struct {
	name                 string
	ports, dst4s, dst6s  int
	udpShare             int // one port in udpShare is UDP
	v4Prefixes, v6Prefix int // addresses spread over this many /16s and /64s
}

var scaleCases = []scaleCase{
	{"150 doors x 30 ports", 4500, 2, 2, 4, 1, 1},
	{"10000 ports on 1000 addresses", 10000, 1000, 1000, 3, 8, 4},
	{"4000 addresses", 3, 2000, 2000, 3, 16, 16},
}

// scaleSpec builds a case's spec: distinct random ports from 1024 up,
// addresses random within a few prefixes (as an interface's are).
func scaleSpec(c scaleCase, rng *rand.Rand) FilterSpec {
	var spec FilterSpec
	seen := map[knock.Port]bool{}
	for len(spec.Ports) < c.ports {
		p := knock.Port{Num: uint16(1024 + rng.Intn(65536-1024)), Proto: knock.TCP}
		if rng.Intn(c.udpShare) == 0 {
			p.Proto = knock.UDP
		}
		if !seen[p] {
			seen[p] = true
			spec.Ports = append(spec.Ports, p)
		}
	}
	for i := 0; i < c.dst4s; i++ {
		spec.Dsts = append(spec.Dsts, netip.AddrFrom4([4]byte{10, byte(rng.Intn(c.v4Prefixes)), byte(rng.Intn(256)), byte(1 + rng.Intn(254))}))
	}
	for i := 0; i < c.dst6s; i++ {
		var a [16]byte
		a[0], a[1], a[7] = 0xfd, 0x77, byte(rng.Intn(c.v6Prefix))
		rng.Read(a[8:])
		spec.Dsts = append(spec.Dsts, netip.AddrFrom16(a))
	}
	return spec
}

func scaleSeed(t testing.TB) int64 {
	seed := int64(rand.Uint32())
	if s := os.Getenv("SESAME_TEST_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SESAME_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (SESAME_TEST_SEED=%d replays it)", seed, seed)
	return seed
}

// packetFrame builds a frame for pkt (TCP SYN or one-byte UDP).
func packetFrame(tb testing.TB, link LinkType, pkt knock.Packet) []byte {
	s := syn(pkt.Src, pkt.Dst, pkt.Port)
	if pkt.Proto == knock.UDP {
		s = udp(pkt.Src, pkt.Dst, pkt.Port)
	}
	return frameFor(tb, link, s)
}

// TestFilterPastTheInstructionLimit assembles filters for specs that do
// not fit 4096 instructions exactly and runs them in x/net/bpf's VM:
// every knock passes (the kernel must never lose one), the program is
// within the kernel's limit, it agrees with its plan on random traffic
// (so the plan's pass rate below is the program's), and traffic far from
// the spec is still dropped in the kernel.
func TestFilterPastTheInstructionLimit(t *testing.T) {
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	for _, c := range scaleCases {
		spec := scaleSpec(c, rng)
		n := mustNormalize(t, spec)
		set := newSpecSet(n)
		full, exact, err := BuildFilter(spec, LinkEthernet)
		if err != nil {
			t.Fatalf("%s: BuildFilter: %v", c.name, err)
		}
		if len(full) > MaxInstructions || exact {
			t.Fatalf("%s: %d instructions, exact %v; want a coarse program within %d", c.name, len(full), exact, MaxInstructions)
		}
		for _, link := range allLinks {
			prog, p, err := planned(n, link, false, MaxInstructions)
			if err != nil {
				t.Fatal(err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatalf("%s/%s: bpf.NewVM: %v", c.name, link, err)
			}
			kernel := func(pkt knock.Packet) bool { return runVM(t, vm, packetFrame(t, link, pkt)) != 0 }
			src := func(dst netip.Addr) netip.Addr {
				if dst.Is4() {
					return cli4
				}
				return cli6
			}
			// Every knock port on some address, every address on some port.
			for _, port := range spec.Ports {
				dst := spec.Dsts[rng.Intn(len(spec.Dsts))]
				pkt := knock.Packet{Src: src(dst), Dst: dst, Port: port.Num, Proto: port.Proto}
				if !kernel(pkt) {
					t.Fatalf("%s/%s: knock %v dropped by the kernel filter", c.name, link, pkt)
				}
			}
			for _, dst := range spec.Dsts {
				port := spec.Ports[rng.Intn(len(spec.Ports))]
				pkt := knock.Packet{Src: src(dst), Dst: dst, Port: port.Num, Proto: port.Proto}
				if !kernel(pkt) {
					t.Fatalf("%s/%s: knock %v dropped by the kernel filter", c.name, link, pkt)
				}
			}
			// Random traffic: the program does what its plan says.
			passed, others := 0, 0
			for i := 0; i < 1000; i++ {
				pkt := randomPacket(rng, spec)
				got := kernel(pkt)
				if got != p.passes(pkt) {
					t.Fatalf("%s/%s: %v: program says %v, its plan %v", c.name, link, pkt, got, !got)
				}
				if !set.has(pkt) {
					others++
					if got {
						passed++
					}
				}
			}
			// Far from the spec: ports below every knock port, and
			// addresses outside the spec's prefixes.
			for _, pkt := range []knock.Packet{
				{Src: cli4, Dst: spec.Dsts[0], Port: 22, Proto: knock.TCP},
				{Src: cli4, Dst: spec.Dsts[0], Port: 443, Proto: knock.TCP},
				{Src: cli4, Dst: spec.Dsts[0], Port: 53, Proto: knock.UDP},
			} {
				if kernel(pkt) {
					t.Errorf("%s/%s: %v passed the kernel filter", c.name, link, pkt)
				}
			}
			if !p.v4.skip && kernel(knock.Packet{Src: cli4, Dst: netip.MustParseAddr("203.0.113.7"), Port: spec.Ports[0].Num, Proto: spec.Ports[0].Proto}) {
				t.Errorf("%s/%s: a far IPv4 destination passed", c.name, link)
			}
			if link == LinkEthernet {
				t.Logf("%s: %d instructions; kernel passes %d of %d random non-knocks (ports %s, addresses v4 %s v6 %s)",
					c.name, len(prog), passed, others, describePorts(p), describeWord(p.v4), describe6(p.v6))
			}
		}
	}
}

// randomPacket is a spec address or a neighbour, and a port anywhere.
func randomPacket(rng *rand.Rand, spec FilterSpec) knock.Packet {
	dst := spec.Dsts[rng.Intn(len(spec.Dsts))]
	switch rng.Intn(3) {
	case 1:
		dst = dst.Next()
	case 2:
		if dst.Is4() {
			b := dst.As4()
			b[3] = byte(rng.Intn(256))
			dst = netip.AddrFrom4(b)
		} else {
			b := dst.As16()
			b[15] = byte(rng.Intn(256))
			dst = netip.AddrFrom16(b)
		}
	}
	pkt := knock.Packet{Src: cli4, Dst: dst, Port: uint16(rng.Intn(65536)), Proto: knock.TCP}
	if dst.Is6() {
		pkt.Src = cli6
	}
	if rng.Intn(3) == 0 {
		pkt.Proto = knock.UDP
	}
	return pkt
}

func describeWord(c wordCheck) string {
	switch {
	case c.skip:
		return "unchecked"
	case c.exact:
		return "exact"
	}
	return fmt.Sprintf("%d ranges", len(c.sp))
}

func describePorts(p plan) string {
	return "tcp " + describeWord(p.tcp) + ", udp " + describeWord(p.udp)
}

func describe6(c addr6Check) string {
	if c.list != nil || c.none {
		return "exact"
	}
	return fmt.Sprintf("by word (%s, %s, %s, %s)", describeWord(c.words[0]), describeWord(c.words[1]), describeWord(c.words[2]), describeWord(c.words[3]))
}

// Every budget Open falls back to still passes every knock, and the
// programs shrink with the budget down to the coarsest.
func TestFilterBudgets(t *testing.T) {
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	spec := scaleSpec(scaleCases[1], rng)
	n := mustNormalize(t, spec)
	prev := MaxInstructions + 1
	for _, budget := range attachBudgets {
		prog, p, err := planned(n, LinkEthernet, true, budget)
		if err != nil {
			t.Fatal(err)
		}
		if len(prog) >= prev {
			t.Errorf("budget %d: %d instructions, not fewer than the budget before (%d)", budget, len(prog), prev)
		}
		prev = len(prog)
		body, _, err := planned(n, LinkEthernet, false, budget-2)
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(body)
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range spec.Ports {
			dst := spec.Dsts[rng.Intn(len(spec.Dsts))]
			src := cli4
			if dst.Is6() {
				src = cli6
			}
			if runVM(t, vm, packetFrame(t, LinkEthernet, knock.Packet{Src: src, Dst: dst, Port: port.Num, Proto: port.Proto})) == 0 {
				t.Fatalf("budget %d: knock on %v to %s dropped", budget, port, dst)
			}
		}
		t.Logf("budget %d: %d instructions (ports %s, v4 %s, v6 %s)", budget, len(prog), describePorts(p), describeWord(p.v4), describe6(p.v6))
	}
	// The coarsest program still tells IPv4/IPv6 TCP/UDP from the rest
	// and drops non-first fragments.
	body, _, _ := planned(n, LinkEthernet, false, 0)
	vm, _ := bpf.NewVM(body)
	if runVM(t, vm, ethFrame(t, with(syn(cli4, srv4, 22), func(s *rawsend.Spec) { s.FragOffset = 3 }))) != 0 {
		t.Error("coarsest program passes a non-first fragment")
	}
}

// spanSet and inSpans agree on every value around every span edge.
func TestSpans(t *testing.T) {
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	for round := 0; round < 200; round++ {
		var vals []uint32
		v := uint32(rng.Intn(5))
		for i := rng.Intn(60); i >= 0; i-- {
			vals = append(vals, v)
			v += 1 + uint32(rng.Intn(4))
		}
		exact := spansOf(vals)
		k := 1 + rng.Intn(len(exact))
		sp := newMerger(exact).spans(k)
		if len(sp) != k {
			t.Fatalf("spans(%d) gave %d spans", k, len(sp))
		}
		a := &asm{}
		acc, rej := a.label(), a.label()
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 4})
		inSpans(a, sp, acc, rej)
		if got := len(a.ins) - 1; got != spansCost(sp) {
			t.Fatalf("inSpans emitted %d instructions, spansCost says %d", got, spansCost(sp))
		}
		a.mark(acc)
		a.emit(bpf.RetConstant{Val: 1})
		a.mark(rej)
		a.emit(bpf.RetConstant{Val: 0})
		prog, err := a.resolve()
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		for x := uint32(0); x <= v+2; x++ {
			in := spanSet(sp, x)
			if got := runVM(t, vm, []byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}) == 1; got != in {
				t.Fatalf("round %d: %d: program %v, spanSet %v (spans %v)", round, x, got, in, sp)
			}
			if spanSet(exact, x) && !in {
				t.Fatalf("round %d: merged spans lost %d", round, x)
			}
		}
	}
}

// BenchmarkBuildFilter measures what building a filter costs at every
// reload and one-time rotation, with the program's size and how much
// unrelated traffic (random ports to the spec's addresses and their
// neighbours) a coarse program lets through to user space.
func BenchmarkBuildFilter(b *testing.B) {
	cases := append([]scaleCase{{"3 ports", 3, 2, 2, 3, 1, 1}}, scaleCases...)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			spec := scaleSpec(c, rng)
			var prog []bpf.RawInstruction
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var err error
				if prog, _, err = BuildFilter(spec, LinkEthernet); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			n, _ := normalize(spec)
			_, p, _ := planned(n, LinkEthernet, true, MaxInstructions)
			set := newSpecSet(n)
			passed, others := 0, 0
			for i := 0; i < 100000; i++ {
				pkt := randomPacket(rng, spec)
				if !set.has(pkt) {
					others++
					if p.passes(pkt) {
						passed++
					}
				}
			}
			b.ReportMetric(float64(len(prog)), "insns")
			b.ReportMetric(100*float64(passed)/float64(others), "%unrelated-passed")
		})
	}
}

// FuzzFilterPlan builds a spec and a budget from the input, assembles the
// program and runs a packet through it in the VM: the program must do
// what its plan says, pass the packet whenever the spec names it, and
// keep within the budget (or be the coarsest program).
func FuzzFilterPlan(f *testing.F) {
	f.Add([]byte{0x1b, 0x58, 0x1f, 0x40, 10, 77, 0, 1}, uint16(4096), uint16(7000), uint8(0), false, false)
	f.Add([]byte{0x1b, 0x58, 0x1b, 0x59, 0x1b, 0x5b, 10, 77, 0, 1, 10, 77, 0, 3}, uint16(70), uint16(7001), uint8(1), true, false)
	f.Add([]byte{0, 80, 0, 90, 0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(90), uint16(85), uint8(2), false, true)
	f.Fuzz(func(t *testing.T, data []byte, budget, port uint16, pick uint8, isUDP, v6 bool) {
		// data: a port count byte's worth of big-endian ports, then
		// addresses (4 bytes, or 16 for v6) from the rest.
		var spec FilterSpec
		if len(data) == 0 {
			return
		}
		nports := int(data[0]%64) + 1
		data = data[1:]
		for i := 0; i < nports && len(data) >= 2; i++ {
			p := knock.Port{Num: uint16(data[0])<<8 | uint16(data[1]), Proto: knock.TCP}
			if p.Num%3 == 0 {
				p.Proto = knock.UDP
			}
			spec.Ports = append(spec.Ports, p)
			data = data[2:]
		}
		size := 4
		if v6 {
			size = 16
		}
		for len(data) >= size {
			a, _ := netip.AddrFromSlice(data[:size])
			spec.Dsts = append(spec.Dsts, a)
			data = data[size:]
		}
		if len(spec.Ports) == 0 || len(spec.Dsts) == 0 {
			return
		}
		n, err := normalize(spec)
		if err != nil {
			return
		}
		b := int(budget % (MaxInstructions + 1))
		prog, p, err := planned(n, LinkEthernet, false, b)
		if err != nil {
			t.Fatal(err)
		}
		_, coarse, _ := planned(n, LinkEthernet, false, 0)
		if len(prog) > b && p.cost() != coarse.cost() {
			t.Fatalf("%d instructions over a budget of %d", len(prog), b)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		dst := spec.Dsts[int(pick)%len(spec.Dsts)].Unmap()
		if pick&0x80 != 0 {
			dst = dst.Next()
		}
		if !dst.IsValid() {
			return
		}
		pkt := knock.Packet{Src: cli4, Dst: dst, Port: port, Proto: knock.TCP}
		if dst.Is6() {
			pkt.Src = cli6
		}
		if isUDP {
			pkt.Proto = knock.UDP
		}
		got := runVM(t, vm, packetFrame(t, LinkEthernet, pkt)) != 0
		if got != p.passes(pkt) {
			t.Fatalf("%v: program %v, plan %v", pkt, got, !got)
		}
		if newSpecSet(n).has(pkt) && !got {
			t.Fatalf("%v: a knock the spec names was dropped", pkt)
		}
	})
}
