package capture

import (
	"bytes"
	"slices"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// dgramSpec has SPA's port as a datagram port beside testSpec's knocks;
// 8000/udp is both a knock port and a datagram port.
var dgramSpec = FilterSpec{Dsts: testSpec.Dsts, Ports: testSpec.Ports, Datagrams: []uint16{62201, 8000}}

func TestNormalizeDatagrams(t *testing.T) {
	n := mustNormalize(t, dgramSpec)
	if !slices.Equal(n.udp, []uint16{8000, 62201}) || !slices.Equal(n.udpKnock, []uint16{8000}) || !slices.Equal(n.dgram, []uint16{8000, 62201}) {
		t.Fatalf("udp %v, udp knocks %v, datagrams %v", n.udp, n.udpKnock, n.dgram)
	}
	set := newSpecSet(n)
	for _, c := range []struct {
		p            knock.Packet
		knock, dgram bool
	}{
		{knock.Packet{Dst: srv4, Port: 62201, Proto: knock.UDP}, false, true},
		{knock.Packet{Dst: srv6, Port: 62201, Proto: knock.UDP}, false, true},
		{knock.Packet{Dst: srv4, Port: 8000, Proto: knock.UDP}, true, true},
		{knock.Packet{Dst: srv4, Port: 62201, Proto: knock.TCP}, false, false},
		{knock.Packet{Dst: oth4, Port: 62201, Proto: knock.UDP}, false, false},
		{knock.Packet{Dst: srv4, Port: 7000, Proto: knock.TCP}, true, false},
	} {
		if k, d := set.classify(c.p); k != c.knock || d != c.dgram {
			t.Errorf("classify(%v) = %v, %v; want %v, %v", c.p, k, d, c.knock, c.dgram)
		}
	}
	// Only datagrams: not an empty spec.
	if mustNormalize(t, FilterSpec{Dsts: testSpec.Dsts, Datagrams: []uint16{62201}}).empty() {
		t.Error("a spec with only a datagram port is empty")
	}
	if _, err := normalize(FilterSpec{Dsts: testSpec.Dsts, Datagrams: []uint16{0}}); err == nil {
		t.Error("datagram port 0 accepted")
	}
}

// The classic filter keeps datagrams to the SPA port, IPv4 and IPv6, and
// still drops the same port over TCP and other destinations.
func TestClassicFilterKeepsDatagrams(t *testing.T) {
	for _, link := range allLinks {
		prog := vmBody(t, dgramSpec, link)
		for _, c := range []struct {
			spec rawsend.Spec
			keep bool
		}{
			{udp(cli4, srv4, 62201), true},
			{udp(cli6, srv6, 62201), true},
			{udp(cli4, target4, 62201), true},
			{syn(cli4, srv4, 62201), false},
			{udp(cli4, oth4, 62201), false},
			{udp(cli6, srv6, 62202), false},
		} {
			if got := vmRun(t, prog, frameFor(t, link, c.spec)) == snapLen; got != c.keep {
				t.Errorf("%s %s -> %s %d/%s: kept %v, want %v", link, c.spec.SrcIP, c.spec.DstIP, c.spec.DstPort, c.spec.Proto, got, c.keep)
			}
		}
	}
}

// Payload is the UDP payload of what Decode took, without allocating,
// also on IPv6 and with Ethernet padding after a short IPv4 packet.
func TestDecodePayload(t *testing.T) {
	payload := bytes.Repeat([]byte("SPA"), 100)
	for _, link := range allLinks {
		d := NewDecoder(link)
		for _, s := range []rawsend.Spec{
			with(udp(cli4, srv4, 62201), func(s *rawsend.Spec) { s.Payload = payload }),
			with(udp(cli6, srv6, 62201), func(s *rawsend.Spec) { s.Payload = payload }),
			with(udp(cli6, srv6, 62201), func(s *rawsend.Spec) { s.Payload, s.HopByHop = payload, true }),
		} {
			f := frameFor(t, link, s)
			if _, ok := d.Decode(f); !ok {
				t.Fatalf("%s: no decode", link)
			}
			if got := d.Payload(); !bytes.Equal(got, payload) {
				t.Errorf("%s %s: payload %d bytes, want %d", link, s.DstIP, len(got), len(payload))
			}
			if allocs := testing.AllocsPerRun(100, func() { d.Decode(f); _ = d.Payload() }); allocs != 0 {
				t.Errorf("%s: %v allocations", link, allocs)
			}
		}
		// Padding after a short datagram is not payload.
		short := frameFor(t, link, with(udp(cli4, srv4, 62201), func(s *rawsend.Spec) { s.Payload = []byte("ab") }))
		short = append(short, 0, 0, 0, 0, 0, 0)
		if _, ok := d.Decode(short); !ok || string(d.Payload()) != "ab" {
			t.Errorf("%s: padded frame's payload %q, want \"ab\"", link, d.Payload())
		}
		if _, ok := d.Decode(frameFor(t, link, syn(cli4, srv4, 7000))); !ok || d.Payload() != nil {
			t.Errorf("%s: a TCP packet's payload %q, want nil", link, d.Payload())
		}
	}
}
