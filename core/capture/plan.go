package capture

import (
	"encoding/binary"
	"slices"

	"golang.org/x/net/bpf"

	"github.com/sesame-knock/sesame/core/knock"
)

// plan says how exactly the kernel filter checks each part of a spec:
// the IPv4 and IPv6 destinations and the TCP and UDP ports. Every check
// emits self-contained code whose length is its cost, so a program's
// length is a fixed part plus the costs of its checks.
type plan struct {
	v4       wordCheck
	v6       addr6Check
	tcp, udp wordCheck
}

// wordCheck tests a 32-bit value against spans; skip leaves the value
// unchecked, none says the spec has no such value (no IPv4 destination,
// no UDP port): the program then drops the packet without a check.
type wordCheck struct {
	sp    []span
	skip  bool
	none  bool
	exact bool // sp is the exact set
}

// addr6Check tests an IPv6 destination: against the exact list of
// addresses when it fits, else word by word (a packet passes when each of
// its four words is some address's word at that place: a superset).
type addr6Check struct {
	none  bool       // no IPv6 destinations: the block drops every packet
	list  [][16]byte // exact
	words [4]wordCheck
}

func (p plan) exact() bool {
	return p.v4.exact && p.tcp.exact && p.udp.exact && p.v6.exact()
}

func (p plan) cost() int {
	return p.v4.cost() + p.v6.cost() + p.tcp.portsCost() + p.udp.portsCost()
}

func (c wordCheck) cost() int {
	if c.skip || c.none {
		return 0
	}
	return 1 + spansCost(c.sp)
}

// portsCost is cost for a port check, which is never left out of the
// program: skipping it is one jump to the accept.
func (c wordCheck) portsCost() int {
	if c.skip && !c.none {
		return 1
	}
	return c.cost()
}

// emit loads the word at X+off and drops the packet unless it passes.
func (c wordCheck) emit(a *asm, off uint32, drop int) {
	if c.skip || c.none {
		return
	}
	a.emit(bpf.LoadIndirect{Off: off, Size: 4})
	pass := a.label()
	inSpans(a, c.sp, pass, drop)
	a.mark(pass)
}

// emitPorts loads the port at X+2 and goes to keep or drop.
func (c wordCheck) emitPorts(a *asm, keep, drop int) {
	if c.none {
		return
	}
	if c.skip {
		a.jump(keep)
		return
	}
	a.emit(bpf.LoadIndirect{Off: 2, Size: 2})
	inSpans(a, c.sp, keep, drop)
}

func (c addr6Check) exact() bool { return c.none || c.list != nil }

func (c addr6Check) cost() int {
	if c.none {
		return 0
	}
	if c.list != nil {
		return list6Cost(len(c.list))
	}
	n := 0
	for _, w := range c.words {
		n += w.cost()
	}
	return n
}

func (c addr6Check) emit(a *asm, drop int) {
	if c.none {
		return
	}
	if c.list != nil {
		inList6(a, c.list, drop)
		return
	}
	for i, w := range c.words {
		w.emit(a, 24+4*uint32(i), drop)
	}
}

// list6Cost is what inList6 emits for n addresses.
func list6Cost(n int) int { return 9*n + 1 }

// coarsestPlan checks nothing but what cannot be left out.
func coarsestPlan(n normSpec) plan {
	skip := wordCheck{skip: true}
	p := plan{v4: skip, tcp: skip, udp: skip}
	p.v6.words = [4]wordCheck{skip, skip, skip, skip}
	if len(n.dst4) == 0 {
		p.v4 = wordCheck{none: true, exact: true}
	}
	if len(n.tcp) == 0 {
		p.tcp = wordCheck{none: true, exact: true}
	}
	if len(n.udp) == 0 {
		p.udp = wordCheck{none: true, exact: true}
	}
	if len(n.dst6) == 0 {
		p.v6 = addr6Check{none: true}
	}
	return p
}

// makePlan chooses the most exact checks that cost at most budget
// instructions in all (or the coarsest plan, when even that does not
// fit). Ports come first: they are what tells knocks from the host's
// other traffic, while nearly every packet on an interface is for one of
// its addresses. Addresses get up to a quarter of the budget, and
// whatever the ports leave.
func makePlan(n normSpec, budget int) plan {
	coarsest := coarsestPlan(n)
	if budget <= coarsest.cost() {
		return coarsest
	}
	v4, tcp, udp := n.dst4, u32s16(n.tcp), u32s16(n.udp)
	d4, d6 := wordDemand(v4), addr6Demand(n.dst6)
	dT, dU := wordDemand(tcp), wordDemand(udp)
	if d4+d6+dT+dU <= budget {
		return plan{v4: fitWord(v4, d4), v6: fitAddr6(n.dst6, d6), tcp: fitPorts(tcp, dT), udp: fitPorts(udp, dU)}
	}
	// A port check costs at least the one jump of a skipped one.
	base := coarsest.tcp.portsCost() + coarsest.udp.portsCost()
	addrs := func(b int) (wordCheck, addr6Check) {
		s := fairShares(b, d4, d6)
		return fitWord(v4, s[0]), fitAddr6(n.dst6, s[1])
	}
	var p plan
	p.v4, p.v6 = addrs(min(d4+d6, (budget-base)/4))
	s := fairShares(budget-base-p.v4.cost()-p.v6.cost(), max(dT-1, 0), max(dU-1, 0))
	p.tcp, p.udp = fitPorts(tcp, 1+s[0]), fitPorts(udp, 1+s[1])
	if spare := budget - p.cost(); spare > 0 {
		// The ports are exact with room left: give it to the addresses.
		p.v4, p.v6 = addrs(p.v4.cost() + p.v6.cost() + spare)
	}
	return p
}

// wordDemand is the cost of an exact check of vals (0 when there are none:
// the block is not emitted).
func wordDemand(vals []uint32) int {
	if len(vals) == 0 {
		return 0
	}
	return 1 + spansCost(spansOf(vals))
}

func addr6Demand(addrs [][16]byte) int {
	if len(addrs) == 0 {
		return 0
	}
	return list6Cost(len(addrs))
}

// fitWord is the most exact check of vals within budget.
func fitWord(vals []uint32, budget int) wordCheck {
	if len(vals) == 0 {
		return wordCheck{none: true, exact: true}
	}
	sp, _, ok := fitSpans(vals, budget-1)
	if !ok {
		return wordCheck{skip: true}
	}
	return wordCheck{sp: sp, exact: len(sp) == len(spansOf(vals))}
}

// fitPorts is fitWord for a port list, whose skipped check costs one
// (see portsCost).
func fitPorts(vals []uint32, budget int) wordCheck { return fitWord(vals, budget) }

// fitAddr6 checks IPv6 destinations exactly when the list fits, else
// word by word, each word as exactly as its share allows.
func fitAddr6(addrs [][16]byte, budget int) addr6Check {
	if len(addrs) == 0 {
		return addr6Check{none: true}
	}
	if list6Cost(len(addrs)) <= budget {
		return addr6Check{list: addrs}
	}
	var words [4][]uint32
	var demand [4]int
	for w := range words {
		for _, a := range addrs {
			words[w] = append(words[w], binary.BigEndian.Uint32(a[4*w:]))
		}
		slices.Sort(words[w])
		words[w] = slices.Compact(words[w])
		demand[w] = wordDemand(words[w])
	}
	var c addr6Check
	s := fairShares(budget, demand[:]...)
	for w := range words {
		c.words[w] = fitWord(words[w], s[w])
		c.words[w].exact = false // words alone never make the check exact
	}
	return c
}

// fairShares splits total between demands, max-min fair: no one gets more
// than it asks, and what one does not need goes to the others equally.
func fairShares(total int, demands ...int) []int {
	out := make([]int, len(demands))
	order := make([]int, len(demands))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return demands[x] - demands[y] })
	left := max(total, 0)
	for k, i := range order {
		share := left / (len(order) - k)
		out[i] = min(demands[i], share)
		left -= out[i]
	}
	return out
}

func u32s16(v []uint16) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = uint32(x)
	}
	return out
}

// passes is what a program built on p decides for a TCP or UDP packet
// without IPv6 extension headers (nor IPv4 fragments): the checks, in Go.
func (p plan) passes(pkt knock.Packet) bool {
	if pkt.Dst.Is4() {
		b := pkt.Dst.As4()
		if !p.v4.passes(binary.BigEndian.Uint32(b[:])) {
			return false
		}
	} else if !p.v6.passes(pkt.Dst.As16()) {
		return false
	}
	if pkt.Proto == knock.TCP {
		return p.tcp.passes(uint32(pkt.Port))
	}
	return p.udp.passes(uint32(pkt.Port))
}

func (c wordCheck) passes(v uint32) bool { return !c.none && (c.skip || spanSet(c.sp, v)) }

func (c addr6Check) passes(a [16]byte) bool {
	if c.none {
		return false
	}
	if c.list != nil {
		return slices.Contains(c.list, a)
	}
	for w, wc := range c.words {
		if !wc.passes(binary.BigEndian.Uint32(a[4*w:])) {
			return false
		}
	}
	return true
}
