package rawsend

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sesame-knock/sesame/core/knock"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	a4   = netip.MustParseAddr("192.0.2.1")
	b4   = netip.MustParseAddr("192.0.2.2")
	a6   = netip.MustParseAddr("2001:db8::1")
	b6   = netip.MustParseAddr("2001:db8::2")
)

// TestFrame decodes built frames with gopacket's full decoder and checks
// each layer, its lengths and its checksums.
func TestFrame(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"v4 syn", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN}},
		{"v4 syn+ack", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN | knock.ACK}},
		{"v4 all flags", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, Flags: 0x3f}},
		{"v4 udp payload", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 8000, Proto: knock.UDP, Payload: []byte("knock")}},
		{"v6 tcp fin", Spec{SrcIP: a6, DstIP: b6, SrcPort: 1, DstPort: 9000, Proto: knock.TCP, Flags: knock.FIN}},
		{"v6 udp hop-by-hop", Spec{SrcIP: a6, DstIP: b6, SrcPort: 1, DstPort: 8000, Proto: knock.UDP, HopByHop: true, Payload: []byte{0}}},
		{"v4 vlan", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, VLANs: []uint16{42}}},
		{"v6 qinq", Spec{SrcIP: a6, DstIP: b6, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, VLANs: []uint16{42, 43}}},
		{"v4 fragment", Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, FragOffset: 3, MoreFragments: true}},
		{"v6 hop-by-hop and fragment", Spec{SrcIP: a6, DstIP: b6, SrcPort: 1, DstPort: 8000, Proto: knock.UDP, HopByHop: true, FragOffset: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.SrcMAC, s.DstMAC = macA, macB
			frame, err := Frame(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(frame) < 60 {
				t.Fatalf("frame of %d bytes: Ethernet minimum is 60 without FCS", len(frame))
			}
			pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if eth.SrcMAC.String() != macA.String() || eth.DstMAC.String() != macB.String() {
				t.Fatalf("MACs %s -> %s", eth.SrcMAC, eth.DstMAC)
			}
			checkVLANs(t, pkt, eth, s.VLANs)
			nl := checkIP(t, pkt, s)
			checkL4(t, pkt, nl, s)
		})
	}
}

func checkVLANs(t *testing.T, pkt gopacket.Packet, eth *layers.Ethernet, ids []uint16) {
	t.Helper()
	var tags []*layers.Dot1Q
	for _, l := range pkt.Layers() {
		if q, ok := l.(*layers.Dot1Q); ok {
			tags = append(tags, q)
		}
	}
	if len(tags) != len(ids) {
		t.Fatalf("%d VLAN tags, want %d", len(tags), len(ids))
	}
	for i, q := range tags {
		if q.VLANIdentifier != ids[i] {
			t.Errorf("tag %d: id %d, want %d", i, q.VLANIdentifier, ids[i])
		}
	}
	switch {
	case len(ids) == 1 && eth.EthernetType != layers.EthernetTypeDot1Q,
		len(ids) > 1 && eth.EthernetType != layers.EthernetTypeQinQ:
		t.Errorf("outer TPID %v for %d tags", eth.EthernetType, len(ids))
	}
}

func checkIP(t *testing.T, pkt gopacket.Packet, s Spec) gopacket.NetworkLayer {
	t.Helper()
	if s.DstIP.Is4() {
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			t.Fatal("no IPv4 layer")
		}
		if ip.SrcIP.String() != s.SrcIP.String() || ip.DstIP.String() != s.DstIP.String() {
			t.Fatalf("addresses %s -> %s", ip.SrcIP, ip.DstIP)
		}
		if ip.FragOffset != s.FragOffset || (ip.Flags&layers.IPv4MoreFragments != 0) != s.MoreFragments {
			t.Fatalf("fragment offset %d flags %v", ip.FragOffset, ip.Flags)
		}
		if sum := fold(inetSum(ip.Contents, 0)); sum != 0xffff {
			t.Fatalf("IPv4 header checksum does not verify (sum %#x)", sum)
		}
		if int(ip.Length) != len(ip.Contents)+len(ip.Payload) {
			t.Fatalf("IPv4 length %d, header+payload %d", ip.Length, len(ip.Contents)+len(ip.Payload))
		}
		return ip
	}
	ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if !ok {
		t.Fatal("no IPv6 layer")
	}
	if ip.SrcIP.String() != s.SrcIP.String() || ip.DstIP.String() != s.DstIP.String() {
		t.Fatalf("addresses %s -> %s", ip.SrcIP, ip.DstIP)
	}
	if (ip.HopByHop != nil) != s.HopByHop {
		t.Fatalf("hop-by-hop header present=%v, want %v", ip.HopByHop != nil, s.HopByHop)
	}
	frag, hasFrag := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	if wantFrag := s.FragOffset != 0 || s.MoreFragments; hasFrag != wantFrag {
		t.Fatalf("fragment header present=%v, want %v", hasFrag, wantFrag)
	}
	if hasFrag && (frag.FragmentOffset != s.FragOffset || frag.MoreFragments != s.MoreFragments ||
		frag.NextHeader != layers.IPProtocol(s.Proto)) {
		t.Fatalf("fragment header %+v", frag)
	}
	return ip
}

func checkL4(t *testing.T, pkt gopacket.Packet, nl gopacket.NetworkLayer, s Spec) {
	t.Helper()
	if s.FragOffset != 0 {
		// gopacket (rightly) does not decode a non-first fragment's payload
		// as TCP/UDP; check the bytes ourselves.
		payload := nl.LayerPayload()
		if f, ok := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok {
			payload = f.Payload
		}
		if len(payload) < 4 || int(payload[2])<<8|int(payload[3]) != int(s.DstPort) {
			t.Fatalf("L4 header after a fragment: % x", payload)
		}
		return
	}
	switch s.Proto {
	case knock.TCP:
		tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			t.Fatal("no TCP layer")
		}
		if uint16(tcp.SrcPort) != s.SrcPort || uint16(tcp.DstPort) != s.DstPort {
			t.Fatalf("ports %d -> %d", tcp.SrcPort, tcp.DstPort)
		}
		if got := tcp.Contents[13] & 0x3f; got != s.Flags {
			t.Fatalf("flags %#x, want %#x", got, s.Flags)
		}
		checkL4Sum(t, s, append(append([]byte{}, tcp.Contents...), tcp.Payload...))
	case knock.UDP:
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			t.Fatal("no UDP layer")
		}
		if uint16(udp.SrcPort) != s.SrcPort || uint16(udp.DstPort) != s.DstPort {
			t.Fatalf("ports %d -> %d", udp.SrcPort, udp.DstPort)
		}
		if int(udp.Length) != 8+len(s.Payload) || string(udp.Payload) != string(s.Payload) {
			t.Fatalf("UDP length %d payload %q", udp.Length, udp.Payload)
		}
		checkL4Sum(t, s, append(append([]byte{}, udp.Contents...), udp.Payload...))
	}
}

func TestIPPacket(t *testing.T) {
	s := Spec{SrcMAC: macA, DstMAC: macB, VLANs: []uint16{5}, SrcIP: a6, DstIP: b6, SrcPort: 1, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN}
	raw, err := IPPacket(s)
	if err != nil {
		t.Fatal(err)
	}
	eth, err := Frame(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(eth[14+4:]) != string(raw) {
		t.Fatalf("IPPacket is not the frame without its link header:\n% x\n% x", raw, eth)
	}
}

func TestFrameErrors(t *testing.T) {
	ok := Spec{SrcIP: a4, DstIP: b4, SrcPort: 1, DstPort: 2, Proto: knock.TCP}
	tests := []struct {
		name string
		mod  func(*Spec)
	}{
		{"no source", func(s *Spec) { s.SrcIP = netip.Addr{} }},
		{"no destination", func(s *Spec) { s.DstIP = netip.Addr{} }},
		{"mixed families", func(s *Spec) { s.DstIP = b6 }},
		{"protocol", func(s *Spec) { s.Proto = 1 }},
		{"hop-by-hop on IPv4", func(s *Spec) { s.HopByHop = true }},
		{"vlan id", func(s *Spec) { s.VLANs = []uint16{4096} }},
		{"fragment offset", func(s *Spec) { s.FragOffset = 0x2000 }},
		{"v6 fragment offset", func(s *Spec) { s.SrcIP, s.DstIP, s.FragOffset = a6, b6, 0x2000 }},
	}
	if _, err := Frame(ok); err != nil {
		t.Fatalf("base spec: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			if _, err := Frame(s); err == nil {
				t.Fatalf("Frame(%+v) succeeded", s)
			}
		})
	}
}

// The checksums are verified here with RFC 1071 arithmetic written for the
// test, not with gopacket, which computed them.

func inetSum(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// checkL4Sum verifies a TCP or UDP checksum over the pseudo-header.
func checkL4Sum(t *testing.T, s Spec, l4 []byte) {
	t.Helper()
	var pseudo []byte
	pseudo = append(pseudo, s.SrcIP.AsSlice()...)
	pseudo = append(pseudo, s.DstIP.AsSlice()...)
	n := len(l4)
	if s.DstIP.Is4() {
		pseudo = append(pseudo, 0, byte(s.Proto), byte(n>>8), byte(n))
	} else {
		pseudo = append(pseudo, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, byte(s.Proto))
	}
	if sum := fold(inetSum(l4, inetSum(pseudo, 0))); sum != 0xffff {
		t.Fatalf("%s checksum does not verify (sum %#x)", s.Proto, sum)
	}
}
