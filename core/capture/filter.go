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
	// MaxInstructions is the kernel's limit on a classic BPF program
	// (BPF_MAXINSNS) and the budget BuildFilter builds to.
	MaxInstructions = 4096
	// packetOutgoing is PACKET_OUTGOING, the packet type of the host's
	// own transmitted frames.
	packetOutgoing = 4
)

// attachBudgets are the instruction budgets Open and SetFilter try, in
// turn, when the kernel refuses a program: besides BPF_MAXINSNS, a
// socket's filter must fit in net.core.optmem_max once the kernel has
// translated it (20 KiB on older kernels, about a thousand classic
// instructions). The last, 0, is the coarsest program there is: IPv4 and
// IPv6 TCP or UDP of the spec's protocols, every check left to user space.
var attachBudgets = []int{MaxInstructions, 2048, 1024, 512, 256, 0}

// ErrFilterAttach is wrapped by Open and SetFilter when the kernel
// refused every program built for the spec, down to the coarsest.
var ErrFilterAttach = errors.New("capture: cannot attach a filter")

// BuildFilter returns the classic BPF program for spec on a link type,
// at most MaxInstructions long. It drops the host's outgoing frames (on
// lo every packet is otherwise seen twice), then keeps IPv4/IPv6 frames,
// untagged or behind one or two in-line VLAN tags, whose destination is
// in spec.Dsts and whose TCP or UDP destination port is in spec.Ports.
// Non-first IPv4 fragments are dropped. IPv6 packets with an extension
// header are kept after the address check, port unchecked: cBPF cannot
// walk the header chain, so the decoder and the user-space check decide.
// An empty spec gives a program that drops everything.
//
// A spec too large for the budget (thousands of ports or addresses) gets
// a coarser program: ports and addresses merged into ranges across their
// smallest gaps, and past that address checks left out, so the kernel
// still drops traffic far from the spec and user space (which checks
// every packet against the exact spec) drops the rest. exact says
// whether the program checks the spec exactly.
func BuildFilter(spec FilterSpec, link LinkType) (prog []bpf.RawInstruction, exact bool, err error) {
	n, err := normalize(spec)
	if err != nil {
		return nil, false, err
	}
	return assemble(n, link, MaxInstructions)
}

func assemble(n normSpec, link LinkType, budget int) ([]bpf.RawInstruction, bool, error) {
	prog, exact, err := program(n, link, true, budget)
	if err != nil {
		return nil, false, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, false, fmt.Errorf("capture: assemble filter: %w", err)
	}
	return raw, exact, nil
}

// filterProgram returns the program as instructions; withPrefix=false
// leaves out the packet-type check, whose extension bpf.NewVM cannot run,
// so that tests can run the body in the VM.
func filterProgram(spec FilterSpec, link LinkType, withPrefix bool, budget int) ([]bpf.Instruction, bool, error) {
	n, err := normalize(spec)
	if err != nil {
		return nil, false, err
	}
	return program(n, link, withPrefix, budget)
}

// program builds the filter for n within budget instructions (a budget
// below the smallest program gives the smallest program).
func program(n normSpec, link LinkType, withPrefix bool, budget int) ([]bpf.Instruction, bool, error) {
	prog, p, err := planned(n, link, withPrefix, budget)
	return prog, p.exact(), err
}

// planned is program with the plan it followed.
func planned(n normSpec, link LinkType, withPrefix bool, budget int) ([]bpf.Instruction, plan, error) {
	if n.empty() {
		a := &asm{}
		prefix(a, withPrefix)
		a.emit(bpf.RetConstant{Val: 0})
		prog, err := a.resolve()
		return prog, coarsestPlan(n), err
	}
	// The part of the program no check contributes to: the checks'
	// costs add to it exactly.
	coarsest := coarsestPlan(n)
	prog, err := emit(n, link, withPrefix, coarsest)
	if err != nil {
		return nil, plan{}, err
	}
	fixed := len(prog) - coarsest.cost()
	p := makePlan(n, budget-fixed)
	if prog, err = emit(n, link, withPrefix, p); err != nil {
		return nil, plan{}, err
	}
	if len(prog) > max(budget, fixed+coarsest.cost()) {
		// makePlan keeps to its budget by construction: this is a bug.
		return nil, plan{}, fmt.Errorf("capture: filter of %d instructions exceeds its budget of %d", len(prog), budget)
	}
	return prog, p, nil
}

func prefix(a *asm, withPrefix bool) {
	if withPrefix {
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.dropIf(bpf.JumpEqual, packetOutgoing)
	}
}

func emit(n normSpec, link LinkType, withPrefix bool, p plan) ([]bpf.Instruction, error) {
	a := &asm{}
	prefix(a, withPrefix)
	if err := body(a, n, link, p); err != nil {
		return nil, err
	}
	return a.resolve()
}

// body emits the link prologue and the per-family checks. Register use:
// the prologue leaves the L3 offset in X and the EtherType (or IP
// version) in A; the family blocks keep X pointing at the current header,
// so every later load is relative to X and shared by all VLAN depths.
// Scratch M[0] holds the L4 protocol.
func body(a *asm, n normSpec, link LinkType, p plan) error {
	v4, v6 := a.label(), a.label()
	keep, drop := a.label(), a.label()
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
		p.v4.emit(a, 16, drop)
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
		p.v6.emit(a, drop)
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
		p.tcp.emitPorts(a, keep, drop)
	}
	a.mark(udpPorts)
	if len(n.udp) > 0 {
		p.udp.emitPorts(a, keep, drop)
	}
	a.mark(keep)
	a.emit(bpf.RetConstant{Val: snapLen})
	a.mark(drop)
	a.emit(bpf.RetConstant{Val: 0})
	return nil
}
