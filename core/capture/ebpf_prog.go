package capture

import (
	"fmt"

	easm "github.com/cilium/ebpf/asm"
)

// The eBPF socket filter: the classic program's checks, with the spec's
// destinations and ports looked up in hash maps instead of compiled into
// the code, so that the program is the same few hundred instructions for
// any spec, checks it exactly, and follows changes to it without being
// replaced (user space updates the maps). It also walks IPv6 extension
// headers, which classic BPF cannot, and counts what it keeps and drops.
//
// Map keys are built from the packet in host byte order (LD_ABS and
// LD_IND convert): a port key is proto<<16 | port, an IPv4 key the
// address as a big-endian uint32, an IPv6 key its four big-endian words.
// User space writes the same values in native byte order (ebpfKeys).

// ebpfMapFDs are the file descriptors the program refers to.
type ebpfMapFDs struct {
	ports, dst4, dst6, counts int
}

// Counter slots of the counts map.
const (
	countDropped = 0 // frames the program dropped (the host's outgoing ones aside)
	countKept    = 1 // frames the program kept
	numCounts    = 2
)

// maxExtHeaders is how many IPv6 extension headers the program walks to
// reach TCP or UDP; a longer chain is kept and left to the decoder, which
// walks any length, so that no knock is lost.
const maxExtHeaders = 8

// __sk_buff offsets (include/uapi/linux/bpf.h).
const skbPktType = 4

// ebpfProgram returns the socket filter for frames of link. Registers:
// R6 holds the context (LD_ABS and LD_IND need it there), R7 the offset of
// the current header, R8 the L3 EtherType, then the L4 protocol, R9 is
// scratch across LD_IND; R0-R5 are clobbered by every packet load and
// helper call. The stack holds map keys: [-4,0) the port key, [-8,-4)
// the IPv4 key or the counter index, [-24,-8) the IPv6 key.
func ebpfProgram(link LinkType, fds ebpfMapFDs) (easm.Instructions, error) {
	b := &ebpfBuilder{}
	b.emit(
		easm.Mov.Reg(easm.R6, easm.R1),
		easm.LoadMem(easm.R0, easm.R6, skbPktType, easm.Word),
		// The host's own transmitted frames are not counted: on lo every
		// packet would otherwise be seen twice.
		easm.JEq.Imm(easm.R0, packetOutgoing, "out"),
	)
	v4Type, v6Type := int32(0x0800), int32(0x86dd)
	switch link {
	case LinkEthernet:
		b.ethLink(12)
	case LinkSLL:
		b.ethLink(14)
	case LinkRawIP:
		b.emit(
			easm.LoadAbs(0, easm.Byte),
			easm.RSh.Imm(easm.R0, 4),
			easm.Mov.Imm(easm.R7, 0),
		)
		v4Type, v6Type = 4, 6
	default:
		return nil, fmt.Errorf("capture: eBPF filter for unknown link type %s", link)
	}
	b.emit(
		easm.JEq.Imm(easm.R0, v4Type, "v4"),
		easm.JEq.Imm(easm.R0, v6Type, "v6"),
		easm.Ja.Label("drop"),
	)
	b.ipv4(fds.dst4)
	b.ipv6(fds.dst6)
	b.ports(fds.ports)
	b.verdicts(fds.counts)
	return b.ins, b.err
}

type ebpfBuilder struct {
	ins     easm.Instructions
	pending string // label for the next instruction
	err     error
}

func (b *ebpfBuilder) emit(ins ...easm.Instruction) {
	for _, in := range ins {
		if b.pending != "" {
			in = in.WithSymbol(b.pending)
			b.pending = ""
		}
		b.ins = append(b.ins, in)
	}
}

// mark puts label on the next instruction emitted.
func (b *ebpfBuilder) mark(label string) {
	if b.pending != "" && b.err == nil {
		b.err = fmt.Errorf("capture: eBPF labels %q and %q on one instruction", b.pending, label)
	}
	b.pending = label
}

// ethLink leaves the EtherType in R0 and the L3 offset in R7 for a frame
// whose EtherType is at etype, skipping up to two in-line VLAN tags as
// the classic program does (a third in-line tag is dropped).
func (b *ebpfBuilder) ethLink(etype int32) {
	for depth := int32(0); depth <= 2; depth++ {
		off := etype + 4*depth
		if depth > 0 {
			b.mark(fmt.Sprintf("tag%d", depth))
		}
		b.emit(
			easm.LoadAbs(off, easm.Half),
			easm.Mov.Imm(easm.R7, off+2),
		)
		if depth < 2 {
			next := fmt.Sprintf("tag%d", depth+1)
			b.emit(
				easm.JEq.Imm(easm.R0, 0x8100, next),
				easm.JEq.Imm(easm.R0, 0x88a8, next),
				easm.Ja.Label("l3"),
			)
		}
	}
	b.mark("l3")
}

// lookup calls bpf_map_lookup_elem(fd, fp+keyOff) and drops the packet
// when the key is not in the map.
func (b *ebpfBuilder) lookup(fd int, keyOff int16) {
	b.emit(
		easm.LoadMapPtr(easm.R1, fd),
		easm.Mov.Reg(easm.R2, easm.RFP),
		easm.Add.Imm(easm.R2, int32(keyOff)),
		easm.FnMapLookupElem.Call(),
		easm.JEq.Imm(easm.R0, 0, "drop"),
	)
}

// ipv4: non-first fragments carry no ports; the protocol must be TCP or
// UDP and the destination in dst4; then R7 moves to the L4 header.
func (b *ebpfBuilder) ipv4(dst4 int) {
	b.mark("v4")
	b.emit(
		easm.LoadInd(easm.R0, easm.R7, 6, easm.Half),
		easm.And.Imm(easm.R0, 0x1fff),
		easm.JNE.Imm(easm.R0, 0, "drop"),
		easm.LoadInd(easm.R0, easm.R7, 9, easm.Byte),
		easm.Mov.Reg(easm.R8, easm.R0),
		easm.JEq.Imm(easm.R8, 6, "v4proto"),
		easm.JEq.Imm(easm.R8, 17, "v4proto"),
		easm.Ja.Label("drop"),
	)
	b.mark("v4proto")
	b.emit(
		easm.LoadInd(easm.R0, easm.R7, 16, easm.Word),
		easm.StoreMem(easm.RFP, -8, easm.R0, easm.Word),
	)
	b.lookup(dst4, -8)
	b.emit(
		easm.LoadInd(easm.R0, easm.R7, 0, easm.Byte),
		easm.And.Imm(easm.R0, 0x0f),
		easm.LSh.Imm(easm.R0, 2),
		easm.Add.Reg(easm.R7, easm.R0),
		easm.Ja.Label("ports"),
	)
}

// ipv6: the destination must be in dst6; then the extension headers the
// decoder walks are skipped up to TCP or UDP. A non-first fragment is
// dropped, any other next header too; a chain longer than maxExtHeaders
// is kept for the decoder to judge.
func (b *ebpfBuilder) ipv6(dst6 int) {
	b.mark("v6")
	for w := int32(0); w < 4; w++ {
		b.emit(
			easm.LoadInd(easm.R0, easm.R7, 24+4*w, easm.Word),
			easm.StoreMem(easm.RFP, int16(-24+4*w), easm.R0, easm.Word),
		)
	}
	b.lookup(dst6, -24)
	b.emit(
		easm.LoadInd(easm.R0, easm.R7, 6, easm.Byte),
		easm.Mov.Reg(easm.R8, easm.R0),
		easm.Add.Imm(easm.R7, 40),
	)
	for k := 0; k < maxExtHeaders; k++ {
		ext, frag, next := fmt.Sprintf("ext%d", k), fmt.Sprintf("frag%d", k), fmt.Sprintf("hdr%d", k+1)
		if k > 0 {
			b.mark(fmt.Sprintf("hdr%d", k))
		}
		b.emit(
			easm.JEq.Imm(easm.R8, 6, "ports"),
			easm.JEq.Imm(easm.R8, 17, "ports"),
			easm.JEq.Imm(easm.R8, 44, frag),
		)
		for _, h := range ipv6ExtHeaders {
			if h != 44 {
				b.emit(easm.JEq.Imm(easm.R8, int32(h), ext))
			}
		}
		b.emit(easm.Ja.Label("drop"))
		// Hop-by-hop, routing, destination options: next header, then
		// the length in 8-octet units, not counting the first 8.
		b.mark(ext)
		b.emit(
			easm.LoadInd(easm.R0, easm.R7, 1, easm.Byte),
			easm.Mov.Reg(easm.R9, easm.R0),
			easm.LoadInd(easm.R0, easm.R7, 0, easm.Byte),
			easm.Mov.Reg(easm.R8, easm.R0),
			easm.Add.Imm(easm.R9, 1),
			easm.LSh.Imm(easm.R9, 3),
			easm.Add.Reg(easm.R7, easm.R9),
			easm.Ja.Label(next),
		)
		// Fragment header: 8 octets; only a first fragment has ports.
		b.mark(frag)
		b.emit(
			easm.LoadInd(easm.R0, easm.R7, 2, easm.Half),
			easm.And.Imm(easm.R0, 0xfff8),
			easm.JNE.Imm(easm.R0, 0, "drop"),
			easm.LoadInd(easm.R0, easm.R7, 0, easm.Byte),
			easm.Mov.Reg(easm.R8, easm.R0),
			easm.Add.Imm(easm.R7, 8),
		)
	}
	b.mark(fmt.Sprintf("hdr%d", maxExtHeaders))
	b.emit(
		easm.JEq.Imm(easm.R8, 6, "ports"),
		easm.JEq.Imm(easm.R8, 17, "ports"),
		easm.Ja.Label("keep"),
	)
}

// ports: R7 points at the TCP or UDP header, R8 holds 6 or 17.
func (b *ebpfBuilder) ports(ports int) {
	b.mark("ports")
	b.emit(
		easm.LoadInd(easm.R0, easm.R7, 2, easm.Half),
		easm.LSh.Imm(easm.R8, 16),
		easm.Or.Reg(easm.R0, easm.R8),
		easm.StoreMem(easm.RFP, -4, easm.R0, easm.Word),
	)
	b.lookup(ports, -4)
	b.emit(easm.Ja.Label("keep"))
}

// verdicts: keep or drop, each counted in its per-CPU slot; "out" drops
// without counting.
func (b *ebpfBuilder) verdicts(counts int) {
	for _, v := range []struct {
		label string
		slot  int64
		ret   int32
	}{{"keep", countKept, snapLen}, {"drop", countDropped, 0}} {
		done := v.label + "done"
		b.mark(v.label)
		b.emit(
			easm.StoreImm(easm.RFP, -8, v.slot, easm.Word),
			easm.LoadMapPtr(easm.R1, counts),
			easm.Mov.Reg(easm.R2, easm.RFP),
			easm.Add.Imm(easm.R2, -8),
			easm.FnMapLookupElem.Call(),
			easm.JEq.Imm(easm.R0, 0, done),
			easm.LoadMem(easm.R1, easm.R0, 0, easm.DWord),
			easm.Add.Imm(easm.R1, 1),
			easm.StoreMem(easm.R0, 0, easm.R1, easm.DWord),
		)
		b.mark(done)
		b.emit(
			easm.Mov.Imm(easm.R0, v.ret),
			easm.Return(),
		)
	}
	b.mark("out")
	b.emit(
		easm.Mov.Imm(easm.R0, 0),
		easm.Return(),
	)
}
