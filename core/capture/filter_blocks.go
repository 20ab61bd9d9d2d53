package capture

import (
	"encoding/binary"

	"golang.org/x/net/bpf"
)

// The building blocks of the filter body. Each keeps its conditional jumps
// local (see asm) and documents what it expects in A and X.

// ethPrologue handles Ethernet-like framing whose EtherType is at offset
// etype: up to two in-line VLAN tags (802.1Q or 802.1ad) are skipped. The
// kernel usually strips the outer tag into packet metadata before a packet
// socket sees the frame, so two in-line tags cover three-deep stacks; a
// frame with more in-line tags is dropped.
func ethPrologue(a *asm, etype uint32) {
	dispatch := a.label()
	for depth := uint32(0); depth <= 2; depth++ {
		off := etype + 4*depth
		a.emit(bpf.LoadAbsolute{Off: off, Size: 2})
		if depth < 2 {
			tagged := a.label()
			a.jumpIf(bpf.JumpEqual, 0x8100, tagged, next)
			a.jumpIf(bpf.JumpEqual, 0x88a8, tagged, next)
			a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: off + 2})
			a.jump(dispatch)
			a.mark(tagged)
			continue
		}
		a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: off + 2})
	}
	a.mark(dispatch)
}

// protoCheck drops a packet whose protocol (at X+off) has no port in the
// spec, and otherwise keeps it in M[0]. For IPv6 (ext) the extension
// headers that may precede TCP or UDP pass too.
func protoCheck(a *asm, n normSpec, off uint32, ext bool) {
	ok := a.label()
	a.emit(bpf.LoadIndirect{Off: off, Size: 1})
	if len(n.tcp) > 0 {
		a.jumpIf(bpf.JumpEqual, 6, ok, next)
	}
	if len(n.udp) > 0 {
		a.jumpIf(bpf.JumpEqual, 17, ok, next)
	}
	if ext {
		for _, h := range ipv6ExtHeaders {
			a.jumpIf(bpf.JumpEqual, h, ok, next)
		}
	}
	a.emit(bpf.RetConstant{Val: 0})
	a.mark(ok)
	a.emit(bpf.StoreScratch{Src: bpf.RegA, N: 0})
}

// ipv6ExtHeaders are hop-by-hop, routing, fragment and destination
// options: the headers the decoder walks to reach TCP or UDP.
var ipv6ExtHeaders = []uint32{0, 43, 44, 60}

// l4Dispatch jumps to the port list for the protocol in M[0]; X must point
// at the L4 header. For IPv6 anything else is an extension header and is
// accepted: cBPF cannot follow the chain (it has no loops), so the ports
// are checked in user space.
func l4Dispatch(a *asm, n normSpec, tcpPorts, udpPorts int, ext bool) {
	toTCP, toUDP := a.label(), a.label()
	a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: 0})
	if len(n.tcp) > 0 {
		a.jumpIf(bpf.JumpEqual, 6, toTCP, next)
	}
	if len(n.udp) > 0 {
		a.jumpIf(bpf.JumpEqual, 17, toUDP, next)
	}
	if ext {
		a.emit(bpf.RetConstant{Val: snapLen})
	} else {
		a.emit(bpf.RetConstant{Val: 0})
	}
	a.mark(toTCP)
	if len(n.tcp) > 0 {
		a.jump(tcpPorts)
	}
	a.mark(toUDP)
	if len(n.udp) > 0 {
		a.jump(udpPorts)
	}
}

// inList6 drops (jumps to drop) an IPv6 packet whose destination, four
// 32-bit words at X+24, is none of addrs, and falls through when it is
// one: nine instructions per address (list6Cost).
func inList6(a *asm, addrs [][16]byte, drop int) {
	end := a.label()
	for _, addr := range addrs {
		miss := a.label()
		for w := uint32(0); w < 4; w++ {
			a.emit(bpf.LoadIndirect{Off: 24 + 4*w, Size: 4})
			a.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(addr[4*w:]), next, miss)
		}
		a.jump(end)
		a.mark(miss)
	}
	a.jump(drop)
	a.mark(end)
}
