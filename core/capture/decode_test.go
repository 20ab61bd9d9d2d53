package capture

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

var allLinks = []LinkType{LinkEthernet, LinkSLL, LinkRawIP}

// knockSpecs decode to their own packet on every link type.
var knockSpecs = []struct {
	name string
	spec rawsend.Spec
}{
	{"v4 tcp syn", syn(cli4, srv4, 7000)},
	{"v4 udp", udp(cli4, srv4, 8000)},
	{"v6 tcp syn", syn(cli6, srv6, 7000)},
	{"v6 udp", udp(cli6, srv6, 8000)},
	{"v4 syn+ack", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.Flags = knock.SYN | knock.ACK })},
	{"v4 ack only", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.Flags = knock.ACK })},
	{"v6 fin", with(syn(cli6, srv6, 9000), func(s *rawsend.Spec) { s.Flags = knock.FIN | knock.ACK })},
	{"v4 spoofed source", syn(oth4, srv4, 7000)},
	{"v4 tcp with payload", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.Payload = []byte("hello") })},
	{"v4 vlan", with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.VLANs = []uint16{100} })},
	{"v6 vlan", with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) { s.VLANs = []uint16{100} })},
	{"v4 qinq", with(udp(cli4, srv4, 8000), func(s *rawsend.Spec) { s.VLANs = []uint16{100, 200} })},
	{"v6 three tags", with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.VLANs = []uint16{1, 2, 3} })},
	{"v6 hop-by-hop tcp", with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.HopByHop = true })},
	{"v6 hop-by-hop udp", with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) { s.HopByHop = true })},
	{"v6 first fragment", with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.MoreFragments = true })},
	{"v6 hop-by-hop then first fragment", with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) {
		s.HopByHop, s.MoreFragments = true, true
	})},
	{"v4 first fragment", with(udp(cli4, srv4, 8000), func(s *rawsend.Spec) { s.MoreFragments = true })},
	// GUE's port makes gopacket's UDP layer name an inner IP header as next
	// layer; the decoder must stop at UDP and keep the outer addresses.
	{"v4 udp to GUE port with IP-like payload", with(udp(cli4, srv4, 6080), func(s *rawsend.Spec) {
		s.Payload = rawFrameNoTB(syn(oth4, oth4, 1))
	})},
}

// rawFrameNoTB is rawFrame for package-level tables.
func rawFrameNoTB(s rawsend.Spec) []byte {
	f, err := rawsend.IPPacket(s)
	if err != nil {
		panic(err)
	}
	return f
}

func TestDecodeKnocks(t *testing.T) {
	for _, link := range allLinks {
		d := NewDecoder(link)
		for _, tc := range knockSpecs {
			if link == LinkRawIP && len(tc.spec.VLANs) > 0 {
				continue // a raw-IP link has no tags
			}
			t.Run(link.String()+"/"+tc.name, func(t *testing.T) {
				got, ok := d.Decode(frameFor(t, link, tc.spec))
				if !ok {
					t.Fatalf("Decode: not a knock, want %v", want(tc.spec))
				}
				if got != want(tc.spec) {
					t.Fatalf("Decode = %v, want %v", got, want(tc.spec))
				}
			})
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	arp := func(tb testing.TB) []byte {
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
			&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
				HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
				SourceHwAddress: macA, SourceProtAddress: cli4.AsSlice(),
				DstHwAddress: make([]byte, 6), DstProtAddress: srv4.AsSlice()})
		if err != nil {
			tb.Fatal(err)
		}
		return buf.Bytes()
	}
	icmp := func(tb testing.TB) []byte {
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: cli4.AsSlice(), DstIP: srv4.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
		if err != nil {
			tb.Fatal(err)
		}
		return buf.Bytes()
	}
	// An IPv4 header whose version nibble says 6, behind EtherType IPv4.
	badVersion := func(tb testing.TB) []byte {
		f := ethFrame(tb, syn(cli4, srv4, 7000))
		f[14] = 0x65
		return f
	}
	ipip := func(tb testing.TB) []byte {
		f := ethFrame(tb, syn(cli4, srv4, 7000))
		f[14+9] = 4 // protocol IPv4-in-IPv4; the "TCP header" would be an inner IP header
		return f
	}
	tests := []struct {
		name  string
		link  LinkType
		frame func(testing.TB) []byte
	}{
		{"arp", LinkEthernet, arp},
		{"icmp", LinkEthernet, icmp},
		{"ipv4 with version 6", LinkEthernet, badVersion},
		{"ip-in-ip", LinkEthernet, ipip},
		{"v4 non-first fragment", LinkEthernet, func(tb testing.TB) []byte {
			return ethFrame(tb, with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.FragOffset = 3 }))
		}},
		{"v4 last fragment", LinkEthernet, func(tb testing.TB) []byte {
			return ethFrame(tb, with(udp(cli4, srv4, 8000), func(s *rawsend.Spec) { s.FragOffset = 185 }))
		}},
		{"v6 non-first fragment", LinkEthernet, func(tb testing.TB) []byte {
			return ethFrame(tb, with(syn(cli6, srv6, 7000), func(s *rawsend.Spec) { s.FragOffset = 3; s.MoreFragments = true }))
		}},
		{"v6 hop-by-hop then non-first fragment", LinkSLL, func(tb testing.TB) []byte {
			return sllFrame(tb, with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) { s.HopByHop = true; s.FragOffset = 1 }))
		}},
		{"raw link, version 5", LinkRawIP, func(tb testing.TB) []byte {
			f := rawFrame(tb, syn(cli4, srv4, 7000))
			f[0] = 0x55
			return f
		}},
		{"raw link, empty", LinkRawIP, func(testing.TB) []byte { return nil }},
		{"ethernet frame on a raw link", LinkRawIP, func(tb testing.TB) []byte { return ethFrame(tb, syn(cli4, srv4, 7000)) }},
		{"unknown link type", LinkType(0), func(tb testing.TB) []byte { return ethFrame(tb, syn(cli4, srv4, 7000)) }},
		{"tcp data offset 4", LinkEthernet, func(tb testing.TB) []byte {
			f := ethFrame(tb, syn(cli4, srv4, 7000))
			f[14+20+12] = 4 << 4
			return f
		}},
		{"v6 payload length 0", LinkEthernet, func(tb testing.TB) []byte {
			f := ethFrame(tb, syn(cli6, srv6, 7000))
			f[14+4], f[14+5] = 0, 0
			return f
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := NewDecoder(tc.link).Decode(tc.frame(t)); ok {
				t.Fatalf("Decode = %v, want not a knock", got)
			}
		})
	}
}

// TestDecodeTruncated cuts valid frames at every length: a frame decodes
// exactly when the L4 header it needs (20 bytes of TCP, 8 of UDP) is whole.
func TestDecodeTruncated(t *testing.T) {
	for _, link := range allLinks {
		d := NewDecoder(link)
		for _, tc := range knockSpecs {
			if link == LinkRawIP && len(tc.spec.VLANs) > 0 {
				continue
			}
			full := frameFor(t, link, tc.spec)
			// The L4 header ends where the payload (and Ethernet padding) begins.
			need := len(frameFor(t, link, with(tc.spec, func(s *rawsend.Spec) { s.Payload = nil })))
			if link != LinkRawIP {
				need = l4End(t, link, tc.spec)
			}
			for n := 0; n < len(full); n++ {
				got, ok := d.Decode(full[:n])
				if ok != (n >= need) {
					t.Fatalf("%s/%s cut at %d of %d (L4 header ends at %d): ok=%v %v", link, tc.name, n, len(full), need, ok, got)
				}
				if ok && got != want(tc.spec) {
					t.Fatalf("%s/%s cut at %d: %v, want %v", link, tc.name, n, got, want(tc.spec))
				}
			}
		}
	}
}

// l4End is the offset just past the TCP or UDP header in spec's frame.
func l4End(tb testing.TB, link LinkType, s rawsend.Spec) int {
	ip := len(rawFrame(tb, with(s, func(s *rawsend.Spec) { s.Payload = nil })))
	hdr := 14 + 4*len(s.VLANs)
	if link == LinkSLL {
		hdr += 2
	}
	return hdr + ip
}

// TestDecodeZeroAllocs checks every kind of knock the decoder handles.
func TestDecodeZeroAllocs(t *testing.T) {
	for _, link := range allLinks {
		d := NewDecoder(link)
		var frames [][]byte
		for _, tc := range knockSpecs {
			if link == LinkRawIP && len(tc.spec.VLANs) > 0 {
				continue
			}
			frames = append(frames, frameFor(t, link, tc.spec))
		}
		allocs := testing.AllocsPerRun(100, func() {
			for _, f := range frames {
				if _, ok := d.Decode(f); !ok {
					panic("knock frame did not decode")
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run of %d frames, want 0", link, allocs, len(frames))
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name string
		link LinkType
		spec rawsend.Spec
	}{
		{"eth-v4-tcp", LinkEthernet, syn(cli4, srv4, 7000)},
		{"eth-v4-udp", LinkEthernet, udp(cli4, srv4, 8000)},
		{"eth-v6-tcp", LinkEthernet, syn(cli6, srv6, 7000)},
		{"eth-vlan-v4-tcp", LinkEthernet, with(syn(cli4, srv4, 7000), func(s *rawsend.Spec) { s.VLANs = []uint16{100} })},
		{"eth-v6-hbh-udp", LinkEthernet, with(udp(cli6, srv6, 8000), func(s *rawsend.Spec) { s.HopByHop = true })},
		{"sll-v4-tcp", LinkSLL, syn(cli4, srv4, 7000)},
		{"raw-v6-tcp", LinkRawIP, syn(cli6, srv6, 7000)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d := NewDecoder(c.link)
			f := frameFor(b, c.link, c.spec)
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				if _, ok := d.Decode(f); !ok {
					b.Fatal("not decoded")
				}
			}
		})
	}
}
