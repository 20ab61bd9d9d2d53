package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sesame-knock/sesame/core/knock"
)

// FilterSpec says which packets are candidate knocks: those sent to one of
// Dsts (the interface's addresses plus the doors' Targets) on one of Ports
// (every port/protocol of every door's sequence). Datagrams are UDP
// ports whose datagrams to Dsts are delivered with their payload (SPA
// packets) rather than as knocks. A spec with no Dsts, or with neither
// Ports nor Datagrams, matches nothing.
type FilterSpec struct {
	Dsts      []netip.Addr
	Ports     []knock.Port
	Datagrams []uint16
}

// normSpec is a FilterSpec validated, sorted and deduplicated: the form
// both the BPF builder and the user-space check use, so that the two agree.
// IPv4-mapped IPv6 addresses count as IPv4 and zones are dropped, as the
// decoder never produces either.
type normSpec struct {
	dst4     []uint32
	dst6     [][16]byte
	tcp, udp []uint16 // what the kernel filter keeps: udp holds dgram too
	// udpKnock are the UDP knock ports, dgram the datagram ports: the
	// user-space check tells them apart.
	udpKnock, dgram []uint16
}

func normalize(spec FilterSpec) (normSpec, error) {
	var n normSpec
	for _, a := range spec.Dsts {
		if !a.IsValid() {
			return normSpec{}, fmt.Errorf("capture: filter destination: invalid address")
		}
		a = a.Unmap().WithZone("")
		if a.Is4() {
			b := a.As4()
			n.dst4 = append(n.dst4, binary.BigEndian.Uint32(b[:]))
		} else {
			n.dst6 = append(n.dst6, a.As16())
		}
	}
	for _, p := range spec.Ports {
		switch p.Proto {
		case knock.TCP:
			n.tcp = append(n.tcp, p.Num)
		case knock.UDP:
			n.udp = append(n.udp, p.Num)
		default:
			return normSpec{}, fmt.Errorf("capture: filter port %s: protocol is not tcp or udp", p)
		}
	}
	slices.Sort(n.dst4)
	n.dst4 = slices.Compact(n.dst4)
	slices.SortFunc(n.dst6, func(a, b [16]byte) int { return slices.Compare(a[:], b[:]) })
	n.dst6 = slices.Compact(n.dst6)
	for _, p := range spec.Datagrams {
		if p == 0 {
			return normSpec{}, fmt.Errorf("capture: filter datagram port 0")
		}
		n.dgram = append(n.dgram, p)
	}
	slices.Sort(n.tcp)
	n.tcp = slices.Compact(n.tcp)
	slices.Sort(n.udp)
	n.udp = slices.Compact(n.udp)
	slices.Sort(n.dgram)
	n.dgram = slices.Compact(n.dgram)
	n.udpKnock = n.udp
	if len(n.dgram) > 0 {
		n.udp = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(n.udp), n.dgram...))))
	}
	return n, nil
}

// empty reports whether nothing can match.
func (n normSpec) empty() bool {
	return len(n.dst4)+len(n.dst6) == 0 || len(n.tcp)+len(n.udp) == 0
}

// specSet is the user-space twin of the BPF program. The kernel filter
// lets some packets through that are not knocks (IPv6 with extension
// headers, whose ports cBPF cannot reach; frames queued before the filter
// was attached), so every decoded packet is checked here as well.
// A specSet is immutable once built.
type specSet struct {
	dsts  map[netip.Addr]struct{}
	ports map[knock.Port]struct{}
	dgram map[uint16]struct{}
}

func newSpecSet(n normSpec) *specSet {
	s := &specSet{
		dsts:  make(map[netip.Addr]struct{}, len(n.dst4)+len(n.dst6)),
		ports: make(map[knock.Port]struct{}, len(n.tcp)+len(n.udp)),
	}
	for _, v := range n.dst4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		s.dsts[netip.AddrFrom4(b)] = struct{}{}
	}
	for _, v := range n.dst6 {
		s.dsts[netip.AddrFrom16(v)] = struct{}{}
	}
	for _, p := range n.tcp {
		s.ports[knock.Port{Num: p, Proto: knock.TCP}] = struct{}{}
	}
	for _, p := range n.udpKnock {
		s.ports[knock.Port{Num: p, Proto: knock.UDP}] = struct{}{}
	}
	if len(n.dgram) > 0 {
		s.dgram = make(map[uint16]struct{}, len(n.dgram))
		for _, p := range n.dgram {
			s.dgram[p] = struct{}{}
		}
	}
	return s
}

// has reports whether a decoded packet is a candidate knock.
func (s *specSet) has(p knock.Packet) bool {
	if _, ok := s.dsts[p.Dst]; !ok {
		return false
	}
	_, ok := s.ports[knock.Port{Num: p.Port, Proto: p.Proto}]
	return ok
}

// classify says whether a decoded packet is a candidate knock and
// whether it is a datagram whose payload is wanted (both, when a UDP
// port is in both lists).
func (s *specSet) classify(p knock.Packet) (isKnock, isDgram bool) {
	if _, ok := s.dsts[p.Dst]; !ok {
		return false, false
	}
	_, isKnock = s.ports[knock.Port{Num: p.Port, Proto: p.Proto}]
	if p.Proto == knock.UDP && s.dgram != nil {
		_, isDgram = s.dgram[p.Port]
	}
	return isKnock, isDgram
}
