package main

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// A patched template must be byte for byte the frame rawsend builds from
// scratch for the same packet (gopacket computes rawsend's checksums, so
// this also checks the patcher's arithmetic against another one).
func TestFramerPatchMatchesRawsend(t *testing.T) {
	mac1 := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	v4, v6 := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("fd77::1")
	tests := []struct {
		name    string
		dst     netip.Addr
		proto   knock.Proto
		flags   uint8
		payload []byte
		srcs    []string
	}{
		{"v4 tcp syn", v4, knock.TCP, knock.SYN, nil, []string{"10.128.0.1", "10.255.255.254", "10.77.1.9"}},
		{"v4 tcp ack", v4, knock.TCP, knock.ACK, nil, []string{"10.200.3.4"}},
		{"v4 udp", v4, knock.UDP, 0, []byte{0}, []string{"10.128.9.9", "10.191.255.255"}},
		{"v6 tcp syn", v6, knock.TCP, knock.SYN, nil, []string{"fd78::1", "fd78::ffff:ffff:ffff:fffe"}},
		{"v6 udp", v6, knock.UDP, 0, []byte{0}, []string{"fd78::abcd", "fd77::1:5"}},
	}
	ports := [][2]uint16{{40000, 7000}, {1, 65535}, {65535, 1}, {33333, 9000}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := rawsend.Spec{SrcMAC: mac1, DstMAC: mac2, SrcIP: netip.MustParseAddr(tc.srcs[0]), DstIP: tc.dst,
				SrcPort: 1234, DstPort: 4321, Proto: tc.proto, Flags: tc.flags, Payload: tc.payload}
			f, err := newFramer(base)
			if err != nil {
				t.Fatal(err)
			}
			buf := f.frame()
			for _, s := range tc.srcs {
				for _, p := range ports {
					src := netip.MustParseAddr(s)
					f.patch(buf, src, p[0], p[1])
					want := base
					want.SrcIP, want.SrcPort, want.DstPort = src, p[0], p[1]
					exp, err := rawsend.Frame(want)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(buf, exp) {
						t.Fatalf("src %s ports %v:\n got % x\nwant % x", src, p, buf, exp)
					}
				}
			}
		})
	}
}

func TestFramerRejectsExtras(t *testing.T) {
	s := rawsend.Spec{SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), Proto: knock.TCP, VLANs: []uint16{5}}
	if _, err := newFramer(s); err == nil {
		t.Fatal("a VLAN-tagged template was accepted")
	}
}

func BenchmarkFramerPatch(b *testing.B) {
	f, err := newFramer(rawsend.Spec{SrcIP: netip.MustParseAddr("10.128.0.1"), DstIP: netip.MustParseAddr("10.77.0.1"),
		SrcPort: 1, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if err != nil {
		b.Fatal(err)
	}
	buf := f.frame()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.patch(buf, netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)}), uint16(i), 7000)
	}
}
