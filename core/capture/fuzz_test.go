package capture

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

type seedKey struct {
	link  LinkType
	frame string
}

// FuzzDecode feeds arbitrary bytes to the decoder of every link type. It
// never panics; a fresh decoder and one reused across inputs agree (no
// state leaks between frames); the frame is not modified; a knock has TCP
// or UDP, valid addresses of one family; and a frame serialized from a
// spec decodes back to that spec.
func FuzzDecode(f *testing.F) {
	seeds := map[seedKey]knock.Packet{}
	for _, link := range allLinks {
		for _, tc := range knockSpecs {
			if link == LinkRawIP && len(tc.spec.VLANs) > 0 {
				continue
			}
			fr := frameFor(f, link, tc.spec)
			seeds[seedKey{link, string(fr)}] = want(tc.spec)
			f.Add(uint8(link), fr)
			f.Add(uint8(link), fr[:len(fr)/2])
			f.Add(uint8(link), fr[:len(fr)-1])
		}
	}
	// SPA datagrams: UDP with a payload, IPv4 and IPv6.
	for _, link := range allLinks {
		for _, sp := range []rawsend.Spec{udp(cli4, srv4, 62201), udp(cli6, srv6, 62201)} {
			sp.Payload = []byte("an SPA packet's base64 text+/=")
			f.Add(uint8(link), frameFor(f, link, sp))
		}
	}
	var mu sync.Mutex // guards shared; fuzz inputs may run concurrently
	shared := map[LinkType]*Decoder{}
	for l := LinkType(0); l < 4; l++ {
		shared[l] = NewDecoder(l)
	}
	f.Fuzz(func(t *testing.T, linkByte uint8, frame []byte) {
		link := LinkType(linkByte % 4) // 0 is no link type at all
		orig := bytes.Clone(frame)
		fresh := NewDecoder(link)
		got, ok := fresh.Decode(frame)
		mu.Lock()
		got2, ok2 := shared[link].Decode(frame)
		pl2 := bytes.Clone(shared[link].Payload())
		mu.Unlock()
		// The payload handed to SPA is a view of the frame's tail, the same
		// from both decoders, and none for TCP.
		pl := fresh.Payload()
		if ok && !bytes.Equal(pl, pl2) {
			t.Fatalf("payload: fresh decoder %q, reused %q", pl, pl2)
		}
		if ok && got.Proto == knock.TCP && pl != nil {
			t.Fatalf("a TCP packet with a UDP payload %q", pl)
		}
		if ok && len(pl) > 0 && (len(pl) > len(frame)-8 || !bytes.Contains(frame, pl)) {
			t.Fatalf("payload %q is not within the frame", pl)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("Decode modified the frame")
		}
		if ok != ok2 || got != got2 {
			t.Fatalf("fresh decoder: %v %v; reused decoder: %v %v", got, ok, got2, ok2)
		}
		if !ok {
			if got != (knock.Packet{}) {
				t.Fatalf("not a knock but returned %v", got)
			}
			return
		}
		if got.Proto != knock.TCP && got.Proto != knock.UDP {
			t.Fatalf("knock with protocol %v", got.Proto)
		}
		if !got.Src.IsValid() || !got.Dst.IsValid() || got.Src.Is4() != got.Dst.Is4() {
			t.Fatalf("knock with addresses %v -> %v", got.Src, got.Dst)
		}
		if got.Proto == knock.UDP && got.Flags != 0 {
			t.Fatalf("udp knock with flags %#x", got.Flags)
		}
		if w, isSeed := seeds[seedKey{link, string(frame)}]; isSeed && got != w {
			t.Fatalf("serialized frame decoded to %v, want %v", got, w)
		}
	})
}

// FuzzDecodeSpec builds frames from fuzzed specs with gopacket and checks
// that every field round-trips, and that exactly the frames with an L4
// header (no non-first fragment) decode.
func FuzzDecodeSpec(f *testing.F) {
	f.Add(uint8(LinkEthernet), false, []byte{10, 77, 0, 2}, []byte{10, 77, 0, 1}, uint16(40000), uint16(7000), false, uint8(knock.SYN), uint8(0), false, uint16(0), false, []byte(nil))
	f.Add(uint8(LinkSLL), true, cli6.AsSlice(), srv6.AsSlice(), uint16(1), uint16(8000), true, uint8(0), uint8(2), true, uint16(0), true, []byte{0})
	f.Add(uint8(LinkRawIP), true, cli6.AsSlice(), srv6.AsSlice(), uint16(1), uint16(9000), false, uint8(0x3f), uint8(0), true, uint16(7), false, []byte("x"))
	f.Fuzz(func(t *testing.T, linkByte uint8, v6 bool, src, dst []byte, sport, dport uint16, isUDP bool,
		flags, vlans uint8, hbh bool, frag uint16, mf bool, payload []byte) {
		link := LinkType(linkByte%3 + 1)
		s := rawsend.Spec{
			SrcMAC: macA, DstMAC: macB,
			SrcIP: addrFrom(src, v6), DstIP: addrFrom(dst, v6),
			SrcPort: sport, DstPort: dport, Proto: knock.TCP, Flags: flags & 0x3f,
			HopByHop: hbh && v6, FragOffset: frag & 0x1fff, MoreFragments: mf, Payload: payload,
		}
		if isUDP {
			s.Proto, s.Flags = knock.UDP, 0
		}
		if link != LinkRawIP {
			for i := range vlans % 4 {
				s.VLANs = append(s.VLANs, uint16(i)+1)
			}
		}
		var frame []byte
		var err error
		switch link {
		case LinkRawIP:
			frame, err = rawsend.IPPacket(s)
		case LinkSLL:
			frame, err = rawsend.Frame(s)
			if err == nil {
				frame = sllFrame(t, s)
			}
		default:
			frame, err = rawsend.Frame(s)
		}
		if err != nil {
			t.Skip(err) // e.g. a payload too large for one packet
		}
		got, ok := NewDecoder(link).Decode(frame)
		if wantOK := s.FragOffset == 0; ok != wantOK {
			t.Fatalf("%+v on %s: ok=%v, want %v (%v)", s, link, ok, wantOK, got)
		}
		if ok && got != want(s) {
			t.Fatalf("%+v on %s: decoded %v, want %v", s, link, got, want(s))
		}
	})
}

// addrFrom makes an address of the wanted family from fuzz bytes.
func addrFrom(b []byte, v6 bool) netip.Addr {
	var a [16]byte
	copy(a[:], b)
	if v6 {
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4([4]byte(a[:4]))
}
