package capture

import (
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sesame-knock/sesame/core/knock"
)

// Decoder turns captured frames into knock packets without allocating. It
// owns preallocated layers that every call overwrites, so one Decoder
// serves one goroutine; give each capture worker its own.
type Decoder struct {
	link LinkType
	// parser starts at the link layer; for LinkRawIP there is one parser
	// per IP version, chosen by the first nibble. All parsers share the
	// layers below.
	parser, raw4, raw6 *gopacket.DecodingLayerParser
	decoded            []gopacket.LayerType

	eth  ethLayer
	sll  sllLayer
	vlan vlanLayer
	ip4  ip4Layer
	ip6  ip6Layer
	ext  ip6ExtLayer
	frag ip6FragLayer
	tcp  tcpLayer
	udp  udpLayer
}

// NewDecoder returns a decoder for frames of the given link type. A
// decoder for an unknown link type decodes nothing.
func NewDecoder(link LinkType) *Decoder {
	d := &Decoder{link: link, decoded: make([]gopacket.LayerType, 0, 16)}
	switch link {
	case LinkEthernet:
		d.parser = d.newParser(layers.LayerTypeEthernet)
	case LinkSLL:
		d.parser = d.newParser(layers.LayerTypeLinuxSLL)
	case LinkRawIP:
		d.raw4 = d.newParser(layers.LayerTypeIPv4)
		d.raw6 = d.newParser(layers.LayerTypeIPv6)
	}
	return d
}

func (d *Decoder) newParser(first gopacket.LayerType) *gopacket.DecodingLayerParser {
	p := gopacket.NewDecodingLayerParser(first)
	// The sparse container indexes decoders by layer type: a slice lookup
	// per layer instead of a map lookup.
	p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
	// The skipper claims every extension type, including fragments; the
	// fragment layer is added after it so that it takes fragments back.
	for _, l := range []gopacket.DecodingLayer{
		&d.eth, &d.sll, &d.vlan, &d.ip4, &d.ip6, &d.ext, &d.frag, &d.tcp, &d.udp,
	} {
		p.AddDecodingLayer(l)
	}
	// A frame that is not a knock (ARP, ICMP) ends the walk early; that is
	// not an error, and reporting it would allocate.
	p.IgnoreUnsupported = true
	return p
}

// Decode reports the knock a frame carries. ok is true only for TCP or UDP
// over IPv4 or IPv6 whose header with both ports was captured; VLAN tags
// and IPv6 extension headers are walked, non-first fragments are not
// knocks. Malformed and truncated frames return false; Decode never
// panics and keeps no reference to frame.
func (d *Decoder) Decode(frame []byte) (pkt knock.Packet, ok bool) {
	p := d.parser
	if d.link == LinkRawIP && len(frame) > 0 {
		switch frame[0] >> 4 {
		case 4:
			p = d.raw4
		case 6:
			p = d.raw6
		}
	}
	if p == nil {
		return knock.Packet{}, false
	}
	if err := p.DecodeLayers(frame, &d.decoded); err != nil {
		return knock.Packet{}, false
	}
	var haveIP, haveL4 bool
	// The layer wrappers allow at most one IP header and one L4 header per
	// frame, so each case below runs at most once.
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			pkt.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP))
			pkt.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP))
			haveIP = true
		case layers.LayerTypeIPv6:
			pkt.Src = netip.AddrFrom16(d.ip6.src)
			pkt.Dst = netip.AddrFrom16(d.ip6.dst)
			haveIP = true
		case layers.LayerTypeTCP:
			pkt.Proto, pkt.Port, pkt.Flags = knock.TCP, d.tcp.dstPort, d.tcp.flags
			haveL4 = true
		case layers.LayerTypeUDP:
			pkt.Proto, pkt.Port = knock.UDP, uint16(d.udp.DstPort)
			haveL4 = true
		}
	}
	if !haveIP || !haveL4 {
		return knock.Packet{}, false
	}
	return pkt, true
}

// Payload is the UDP payload of the packet the last successful Decode
// returned, when it was UDP: a view into that frame (cut to the UDP and
// IP lengths, and to what was captured), valid while the frame is; nil
// for TCP. It allocates nothing.
func (d *Decoder) Payload() []byte {
	if len(d.decoded) == 0 || d.decoded[len(d.decoded)-1] != layers.LayerTypeUDP {
		return nil
	}
	return d.udp.Payload
}
