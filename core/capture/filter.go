package capture

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

const (
	// snapLen is what an accepting filter returns: keep the whole frame,
	// up to libpcap's maximum snapshot length.
	snapLen = 262144
	// maxInsns is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
	maxInsns = 4096
	// packetOutgoing is PACKET_OUTGOING, the packet type of the host's
	// own transmitted frames.
	packetOutgoing = 4
	// listChunk bounds the comparisons between two local jump targets, so
	// that conditional jumps (8-bit offsets) always reach them.
	listChunk = 250
)

// ErrFilterTooLarge is returned when a spec needs more instructions than
// the kernel accepts.
var ErrFilterTooLarge = errors.New("capture: BPF filter exceeds 4096 instructions")

// BuildFilter returns the classic BPF program for spec on a link type. It
// drops the host's outgoing frames (on lo every packet is otherwise seen
// twice), then keeps IPv4/IPv6 frames, untagged or behind one or two
// in-line VLAN tags, whose destination is in spec.Dsts and whose TCP or UDP
// destination port is in spec.Ports. Non-first IPv4 fragments are dropped.
// IPv6 packets with an extension header are kept after the address check,
// port unchecked: cBPF cannot walk the header chain, so the decoder and
// the user-space check decide. An empty spec gives a program that drops
// everything.
func BuildFilter(spec FilterSpec, link LinkType) ([]bpf.RawInstruction, error) {
	n, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	return assemble(n, link)
}

func assemble(n normSpec, link LinkType) ([]bpf.RawInstruction, error) {
	prog, err := program(n, link, true)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capture: assemble filter: %w", err)
	}
	return raw, nil
}

// filterProgram returns the program as instructions; withPrefix=false
// leaves out the packet-type check, whose extension bpf.NewVM cannot run,
// so that tests can run the body in the VM.
func filterProgram(spec FilterSpec, link LinkType, withPrefix bool) ([]bpf.Instruction, error) {
	n, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	return program(n, link, withPrefix)
}

func program(n normSpec, link LinkType, withPrefix bool) ([]bpf.Instruction, error) {
	a := &asm{}
	if withPrefix {
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.dropIf(bpf.JumpEqual, packetOutgoing)
	}
	if n.empty() {
		a.emit(bpf.RetConstant{Val: 0})
		return a.resolve()
	}
	if err := body(a, n, link); err != nil {
		return nil, err
	}
	prog, err := a.resolve()
	if err != nil {
		return nil, err
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("%w: %d addresses and %d ports need %d", ErrFilterTooLarge,
			len(n.dst4)+len(n.dst6), len(n.tcp)+len(n.udp), len(prog))
	}
	return prog, nil
}

// body emits the link prologue and the per-family checks. Register use:
// the prologue leaves the L3 offset in X and the EtherType (or IP
// version) in A; the family blocks keep X pointing at the current header,
// so every later load is relative to X and shared by all VLAN depths.
// Scratch M[0] holds the L4 protocol.
func body(a *asm, n normSpec, link LinkType) error {
	v4, v6 := a.label(), a.label()
	switch link {
	case LinkEthernet:
		ethPrologue(a, 12)
	case LinkSLL:
		ethPrologue(a, 14)
	case LinkRawIP:
		a.emit(
			bpf.LoadAbsolute{Off: 0, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
			bpf.LoadConstant{Dst: bpf.RegX, Val: 0},
		)
	default:
		return fmt.Errorf("capture: filter for unknown link type %s", link)
	}
	v4Val, v6Val := uint32(0x0800), uint32(0x86dd)
	if link == LinkRawIP {
		v4Val, v6Val = 4, 6
	}
	// Dispatch on the family. The family blocks may be far away, so the
	// conditional jumps land on unconditional ones.
	toV4, toV6 := a.label(), a.label()
	a.jumpIf(bpf.JumpEqual, v4Val, toV4, next)
	a.jumpIf(bpf.JumpEqual, v6Val, toV6, next)
	a.emit(bpf.RetConstant{Val: 0})
	a.mark(toV4)
	a.jump(v4)
	a.mark(toV6)
	a.jump(v6)
	tcpPorts, udpPorts := a.label(), a.label()

	a.mark(v4)
	if len(n.dst4) == 0 {
		a.emit(bpf.RetConstant{Val: 0})
	} else {
		// Non-first fragments carry no L4 header.
		a.emit(bpf.LoadIndirect{Off: 6, Size: 2})
		a.dropIf(bpf.JumpBitsSet, 0x1fff)
		protoCheck(a, n, 9, false)
		a.emit(bpf.LoadIndirect{Off: 16, Size: 4})
		inList(a, n.dst4)
		// X = L3 offset + IHL*4: the L4 header.
		a.emit(
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{},
		)
		l4Dispatch(a, n, tcpPorts, udpPorts, false)
	}

	a.mark(v6)
	if len(n.dst6) == 0 {
		a.emit(bpf.RetConstant{Val: 0})
	} else {
		protoCheck(a, n, 6, true)
		inList6(a, n.dst6)
		a.emit(
			bpf.TXA{},
			bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40},
			bpf.TAX{},
		)
		l4Dispatch(a, n, tcpPorts, udpPorts, true)
	}

	// X points at the L4 header; the destination port is at X+2.
	a.mark(tcpPorts)
	if len(n.tcp) > 0 {
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2})
		inList(a, u16s(n.tcp))
		a.emit(bpf.RetConstant{Val: snapLen})
	}
	a.mark(udpPorts)
	if len(n.udp) > 0 {
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2})
		inList(a, u16s(n.udp))
		a.emit(bpf.RetConstant{Val: snapLen})
	}
	return nil
}
