package capture

import (
	"encoding/binary"
	"errors"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The decoder's layers wrap gopacket's so that each one names only the
// next layers a knock can have. The parser therefore never decodes a
// second IP header (IP-in-IP, GUE) into the same preallocated layer, never
// reads past TCP/UDP, and never treats a non-first fragment's payload as
// an L4 header.

// Sentinel errors keep malformed frames in our own layers allocation-free.
// gopacket's layers still build their errors with fmt.Errorf, so a
// malformed frame that fails inside them allocates its error value.
var (
	errShortIPv6 = errors.New("ipv6 header truncated")
	errNotIPv6   = errors.New("ipv6 layer: version is not 6")
	errJumbogram = errors.New("ipv6 jumbogram: not a knock")
	errNotIPv4   = errors.New("ipv4 layer: version is not 4")
	errShortTCP  = errors.New("tcp header truncated")
	errTCPOffset = errors.New("tcp data offset below 5")
)

// linkNext maps an EtherType to the next layer: VLAN tags or IP.
func linkNext(t layers.EthernetType) gopacket.LayerType {
	switch t {
	case layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ:
		return layers.LayerTypeDot1Q
	case layers.EthernetTypeIPv4:
		return layers.LayerTypeIPv4
	case layers.EthernetTypeIPv6:
		return layers.LayerTypeIPv6
	}
	return gopacket.LayerTypeZero
}

// l4Next maps an IPv4 protocol to the next layer.
func l4Next(p layers.IPProtocol) gopacket.LayerType {
	switch p {
	case layers.IPProtocolTCP:
		return layers.LayerTypeTCP
	case layers.IPProtocolUDP:
		return layers.LayerTypeUDP
	}
	return gopacket.LayerTypeZero
}

// ip6Next maps an IPv6 next-header value to the next layer: TCP, UDP or
// one of the extension headers the decoder walks.
func ip6Next(p layers.IPProtocol) gopacket.LayerType {
	switch p {
	case layers.IPProtocolIPv6HopByHop:
		return layers.LayerTypeIPv6HopByHop
	case layers.IPProtocolIPv6Routing:
		return layers.LayerTypeIPv6Routing
	case layers.IPProtocolIPv6Fragment:
		return layers.LayerTypeIPv6Fragment
	case layers.IPProtocolIPv6Destination:
		return layers.LayerTypeIPv6Destination
	}
	return l4Next(p)
}

type ethLayer struct{ layers.Ethernet }

func (l *ethLayer) NextLayerType() gopacket.LayerType { return linkNext(l.EthernetType) }

type sllLayer struct{ layers.LinuxSLL }

func (l *sllLayer) NextLayerType() gopacket.LayerType { return linkNext(l.EthernetType) }

// vlanLayer decodes every stacked 802.1Q/802.1ad tag in turn; the tags'
// values are not kept.
type vlanLayer struct{ layers.Dot1Q }

func (l *vlanLayer) NextLayerType() gopacket.LayerType { return linkNext(l.Type) }

type ip4Layer struct{ layers.IPv4 }

func (l *ip4Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := l.IPv4.DecodeFromBytes(data, df); err != nil {
		return err
	}
	if l.Version != 4 {
		return errNotIPv4
	}
	return nil
}

// NextLayerType stops at non-first fragments (they carry no L4 header);
// a first fragment (offset 0, more-fragments set) still has the ports.
func (l *ip4Layer) NextLayerType() gopacket.LayerType {
	if l.FragOffset != 0 {
		return gopacket.LayerTypeZero
	}
	return l4Next(l.Protocol)
}

// ip6Layer decodes only the fixed 40-byte IPv6 header. gopacket's
// layers.IPv6 parses a hop-by-hop header itself and allocates one value
// per option; here every extension header is a layer of its own, skipped
// without looking at its options.
type ip6Layer struct {
	layers.BaseLayer
	next     layers.IPProtocol
	src, dst [16]byte
}

func (l *ip6Layer) CanDecode() gopacket.LayerClass { return layers.LayerTypeIPv6 }

func (l *ip6Layer) NextLayerType() gopacket.LayerType { return ip6Next(l.next) }

func (l *ip6Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 40 {
		df.SetTruncated()
		return errShortIPv6
	}
	if data[0]>>4 != 6 {
		return errNotIPv6
	}
	plen := int(binary.BigEndian.Uint16(data[4:6]))
	if plen == 0 {
		return errJumbogram
	}
	end := 40 + plen
	if end > len(data) {
		df.SetTruncated()
		end = len(data)
	}
	l.next = layers.IPProtocol(data[6])
	copy(l.src[:], data[8:24])
	copy(l.dst[:], data[24:40])
	l.BaseLayer = layers.BaseLayer{Contents: data[:40], Payload: data[40:end]}
	return nil
}

// ip6ExtLayer skips hop-by-hop, routing and destination-options headers.
type ip6ExtLayer struct{ layers.IPv6ExtensionSkipper }

func (l *ip6ExtLayer) NextLayerType() gopacket.LayerType { return ip6Next(l.NextHeader) }

// ip6FragLayer follows a fragment header only for a first fragment.
type ip6FragLayer struct{ layers.IPv6Fragment }

func (l *ip6FragLayer) NextLayerType() gopacket.LayerType {
	if l.FragmentOffset != 0 {
		return gopacket.LayerTypeZero
	}
	return ip6Next(l.NextHeader)
}

// tcpLayer reads only what a knock needs: ports and flags. gopacket's
// layers.TCP parses every option and allocates for MPTCP ones, which a
// flood of crafted SYNs to a knock port could turn into GC pressure.
type tcpLayer struct {
	layers.BaseLayer
	srcPort, dstPort uint16
	flags            uint8
}

func (l *tcpLayer) CanDecode() gopacket.LayerClass { return layers.LayerTypeTCP }

// NextLayerType ends the walk: a knock's payload is never decoded.
func (l *tcpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

func (l *tcpLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		df.SetTruncated()
		return errShortTCP
	}
	hlen := int(data[12]>>4) * 4
	if hlen < 20 {
		return errTCPOffset
	}
	if hlen > len(data) {
		// The options are cut off, but the fields a knock needs are whole.
		df.SetTruncated()
		hlen = len(data)
	}
	l.srcPort = binary.BigEndian.Uint16(data[0:2])
	l.dstPort = binary.BigEndian.Uint16(data[2:4])
	l.flags = data[13]
	l.BaseLayer = layers.BaseLayer{Contents: data[:hlen], Payload: data[hlen:]}
	return nil
}

// udpLayer ends the walk like tcpLayer; layers.UDP allocates nothing.
type udpLayer struct{ layers.UDP }

func (l *udpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }
