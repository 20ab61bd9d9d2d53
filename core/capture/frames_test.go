package capture

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// Test frames are serialized with gopacket (through rawsend), never typed
// in as bytes, so they have the lengths and checksums a kernel would send.

var (
	srv4 = netip.MustParseAddr("10.77.0.1")
	cli4 = netip.MustParseAddr("10.77.0.2")
	srv6 = netip.MustParseAddr("fd77::1")
	cli6 = netip.MustParseAddr("fd77::2")
	oth4 = netip.MustParseAddr("10.77.0.9")
	oth6 = netip.MustParseAddr("fd77::9")

	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// syn returns a TCP SYN spec from src to dst:port.
func syn(src, dst netip.Addr, port uint16) rawsend.Spec {
	return rawsend.Spec{SrcMAC: macA, DstMAC: macB, SrcIP: src, DstIP: dst,
		SrcPort: 40000, DstPort: port, Proto: knock.TCP, Flags: knock.SYN}
}

// udp returns a one-byte UDP datagram spec, as the knock client sends.
func udp(src, dst netip.Addr, port uint16) rawsend.Spec {
	return rawsend.Spec{SrcMAC: macA, DstMAC: macB, SrcIP: src, DstIP: dst,
		SrcPort: 40001, DstPort: port, Proto: knock.UDP, Payload: []byte{0}}
}

// want is the packet a spec should decode to.
func want(s rawsend.Spec) knock.Packet {
	p := knock.Packet{Src: s.SrcIP, Dst: s.DstIP, Port: s.DstPort, Proto: s.Proto}
	if s.Proto == knock.TCP {
		p.Flags = s.Flags
	}
	return p
}

func ethFrame(tb testing.TB, s rawsend.Spec) []byte {
	tb.Helper()
	f, err := rawsend.Frame(s)
	if err != nil {
		tb.Fatalf("rawsend.Frame(%+v): %v", s, err)
	}
	return f
}

func rawFrame(tb testing.TB, s rawsend.Spec) []byte {
	tb.Helper()
	f, err := rawsend.IPPacket(s)
	if err != nil {
		tb.Fatalf("rawsend.IPPacket(%+v): %v", s, err)
	}
	return f
}

// sllFrame turns spec's Ethernet frame into a Linux cooked (v1) capture:
// packet type, ARPHRD_ETHER, the source MAC, then the EtherType that was
// at offset 12 (0x8100 if the frame is tagged, as libpcap writes it).
func sllFrame(tb testing.TB, s rawsend.Spec) []byte {
	tb.Helper()
	eth := ethFrame(tb, s)
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint16(hdr[0:], 0) // PACKET_HOST
	binary.BigEndian.PutUint16(hdr[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(hdr[4:], 6)
	copy(hdr[6:], eth[6:12])
	copy(hdr[14:], eth[12:14])
	return append(hdr, eth[14:]...)
}

// frameFor builds spec's frame for a link type.
func frameFor(tb testing.TB, link LinkType, s rawsend.Spec) []byte {
	switch link {
	case LinkRawIP:
		return rawFrame(tb, s)
	case LinkSLL:
		return sllFrame(tb, s)
	}
	return ethFrame(tb, s)
}

func with(s rawsend.Spec, f func(*rawsend.Spec)) rawsend.Spec {
	f(&s)
	return s
}
