package rawsend_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

const waitFor = 10 * time.Second

var (
	s4, c4 = netnstest.ServerAddr4, netnstest.ClientAddr4
	s6, c6 = netnstest.ServerAddr6, netnstest.ClientAddr6
)

// setup returns a pair, a Sender on the client's veth and the server's MAC.
func setup(t *testing.T) (*netnstest.Pair, *rawsend.Sender, net.HardwareAddr) {
	t.Helper()
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	s, mac := rawsend.ForPair(t, p)
	return p, s, mac
}

func send(t *testing.T, s *rawsend.Sender, spec rawsend.Spec) {
	t.Helper()
	if err := s.Send(spec); err != nil {
		t.Fatalf("Send(%+v): %v", spec, err)
	}
}

// TestSendReachesSocket: the server's stack accepts what rawsend builds
// (it checks the IPv4 header checksum and all lengths) and hands the
// payload to a plain UDP socket, with and without a hop-by-hop header.
func TestSendReachesSocket(t *testing.T) {
	p, s, srvMAC := setup(t)
	var conn *net.UDPConn
	if err := p.Server.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: 8000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, tc := range []struct {
		payload string
		src     netip.Addr
		dst     netip.Addr
		hbh     bool
	}{
		{"v4", c4, s4, false},
		{"v6", c6, s6, false},
		{"v6 hop-by-hop", c6, s6, true},
	} {
		send(t, s, rawsend.Spec{DstMAC: srvMAC, SrcIP: tc.src, DstIP: tc.dst, SrcPort: 40000, DstPort: 8000,
			Proto: knock.UDP, HopByHop: tc.hbh, Payload: []byte(tc.payload)})
		conn.SetReadDeadline(time.Now().Add(waitFor))
		buf := make([]byte, 100)
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: %v", tc.payload, err)
		}
		if string(buf[:n]) != tc.payload || from.Addr().Unmap() != tc.src || from.Port() != 40000 {
			t.Fatalf("%s: got %q from %s", tc.payload, buf[:n], from)
		}
	}
}

// TestSendCaptured sends what the knock client cannot and checks, with the
// capture handle on the server, exactly which knocks arrive.
func TestSendCaptured(t *testing.T) {
	p, s, srvMAC := setup(t)
	var h *capture.Handle
	if err := p.Server.Do(func() (err error) {
		h, err = capture.Open(netnstest.ServerIf, capture.FilterSpec{
			Dsts: []netip.Addr{s4, s6},
			Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP},
				{Num: 9999, Proto: knock.UDP}},
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pkts := make(chan knock.Packet, 100)
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background(), func(p knock.Packet) { pkts <- p }, nil) }()
	t.Cleanup(func() {
		h.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	spoofed := netip.MustParseAddr("203.0.113.7")
	base := func(src, dst netip.Addr, proto knock.Proto, port uint16, flags uint8) rawsend.Spec {
		return rawsend.Spec{DstMAC: srvMAC, SrcIP: src, DstIP: dst, SrcPort: 40000, DstPort: port, Proto: proto, Flags: flags}
	}
	tests := []struct {
		name    string
		spec    rawsend.Spec
		deliver bool
	}{
		{"syn+ack", base(c4, s4, knock.TCP, 7000, knock.SYN|knock.ACK), true},
		{"ack only", base(c4, s4, knock.TCP, 7000, knock.ACK), true},
		{"fin+ack v6", base(c6, s6, knock.TCP, 7000, knock.FIN|knock.ACK), true},
		{"spoofed source", base(spoofed, s4, knock.TCP, 7000, knock.SYN), true},
		{"vlan tag", with(base(c4, s4, knock.TCP, 7000, knock.SYN), func(s *rawsend.Spec) { s.VLANs = []uint16{100} }), true},
		{"qinq", with(base(c6, s6, knock.UDP, 8000, 0), func(s *rawsend.Spec) { s.VLANs = []uint16{100, 200} }), true},
		{"v6 hop-by-hop", with(base(c6, s6, knock.TCP, 7000, knock.SYN), func(s *rawsend.Spec) { s.HopByHop = true }), true},
		{"v6 hop-by-hop, other port", with(base(c6, s6, knock.TCP, 22, knock.SYN), func(s *rawsend.Spec) { s.HopByHop = true }), false},
		{"v4 first fragment", with(base(c4, s4, knock.UDP, 8000, 0), func(s *rawsend.Spec) { s.MoreFragments = true }), true},
		{"v4 non-first fragment", with(base(c4, s4, knock.TCP, 7000, knock.SYN), func(s *rawsend.Spec) { s.FragOffset = 8 }), false},
		{"v6 non-first fragment", with(base(c6, s6, knock.UDP, 8000, 0), func(s *rawsend.Spec) { s.FragOffset = 8 }), false},
		{"other destination", base(c4, netip.MustParseAddr("10.77.0.77"), knock.TCP, 7000, knock.SYN), false},
	}
	var want []knock.Packet
	for _, tc := range tests {
		send(t, s, tc.spec)
		if tc.deliver {
			want = append(want, knock.Packet{Src: tc.spec.SrcIP, Dst: tc.spec.DstIP, Port: tc.spec.DstPort,
				Proto: tc.spec.Proto, Flags: tc.spec.Flags})
		}
	}
	// Frames on one veth arrive in order: everything sent before the
	// sentinel is read before it.
	send(t, s, base(c4, s4, knock.UDP, 9999, 0))
	var got []knock.Packet
	deadline := time.After(waitFor)
	for {
		select {
		case pkt := <-pkts:
			if pkt.Port == 9999 {
				if len(got) != len(want) {
					t.Fatalf("delivered %d knocks, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("knock %d: %v, want %v", i, got[i], want[i])
					}
				}
				return
			}
			got = append(got, pkt)
		case <-deadline:
			t.Fatalf("sentinel not delivered; got %v", got)
		}
	}
}

func with(s rawsend.Spec, f func(*rawsend.Spec)) rawsend.Spec {
	f(&s)
	return s
}

// TestVLANOnVeth records what a packet socket on the receiving veth sees
// of a tagged frame when no VLAN device exists: the kernel moves the
// outer tag into packet metadata (PACKET_AUXDATA) before packet sockets
// see the frame, so a single tag is gone from the bytes, and of a QinQ
// pair only the inner tag stays in line. The capture filter relies on
// this: it handles two in-line tags, i.e. three-deep stacks on the wire.
func TestVLANOnVeth(t *testing.T) {
	p, s, srvMAC := setup(t)
	var raw *pcapgo.EthernetHandle
	if err := p.Server.Do(func() (err error) {
		raw, err = pcapgo.NewEthernetHandle(netnstest.ServerIf)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	for _, tc := range []struct {
		name       string
		vlans      []uint16
		wantInline []uint16 // tags still in the frame's bytes
		wantAux    int      // VLAN id in auxdata
	}{
		{"single tag", []uint16{100}, nil, 100},
		{"qinq", []uint16{100, 200}, []uint16{200}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := []byte("sesame-vlan-" + tc.name)
			send(t, s, rawsend.Spec{DstMAC: srvMAC, VLANs: tc.vlans, SrcIP: c4, DstIP: s4,
				SrcPort: 1, DstPort: 7000, Proto: knock.UDP, Payload: marker})
			frame, aux := readUntil(t, raw, marker)
			var inline []uint16
			off := 12
			for et := binary.BigEndian.Uint16(frame[off:]); et == 0x8100 || et == 0x88a8; et = binary.BigEndian.Uint16(frame[off:]) {
				inline = append(inline, binary.BigEndian.Uint16(frame[off+2:])&0xfff)
				off += 4
			}
			if et := binary.BigEndian.Uint16(frame[off:]); et != 0x0800 {
				t.Fatalf("EtherType after tags %#x", et)
			}
			if !equalU16(inline, tc.wantInline) || aux != tc.wantAux {
				t.Fatalf("in-line tags %v, auxdata VLAN %d; want %v and %d", inline, aux, tc.wantInline, tc.wantAux)
			}
			t.Logf("sent tags %v: in-line %v, auxdata VLAN %d", tc.vlans, inline, aux)
		})
	}
}

// readUntil reads frames until one contains marker; it returns the frame
// and the VLAN id from auxdata (-1 if none).
func readUntil(t *testing.T, raw *pcapgo.EthernetHandle, marker []byte) ([]byte, int) {
	t.Helper()
	type result struct {
		frame []byte
		aux   int
		err   error
	}
	res := make(chan result, 1)
	go func() {
		for {
			data, ci, err := raw.ReadPacketData()
			if err != nil {
				res <- result{err: err}
				return
			}
			if bytes.Contains(data, marker) {
				aux := -1
				if len(ci.AncillaryData) > 0 {
					aux = ci.AncillaryData[0].(int)
				}
				res <- result{frame: data, aux: aux}
				return
			}
		}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.frame, r.aux
	case <-time.After(waitFor):
		raw.Close() // ends the reader
		t.Fatal("marked frame never seen")
	}
	return nil, 0
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
