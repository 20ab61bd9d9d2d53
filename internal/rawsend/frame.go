// Package rawsend builds and sends the packets tests need and the stock
// clients cannot make: any TCP flag combination, spoofed sources, VLAN
// tags, IPv6 extension headers and fragments. It writes whole Ethernet
// frames to an AF_PACKET socket; it never receives, and it is meant for
// test namespaces only (open it inside netnstest's ns.Do).
package rawsend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sesame-knock/sesame/core/knock"
)

// Spec describes one packet. The zero values of the optional fields give
// a plain untagged, unfragmented packet.
type Spec struct {
	// SrcMAC and DstMAC default to all zeros in Frame (loopback framing);
	// Sender.Send fills SrcMAC with its interface's address. DstMAC must be
	// the receiving interface's address for the peer to treat the frame as
	// its own (otherwise it sees PACKET_OTHERHOST).
	SrcMAC, DstMAC net.HardwareAddr
	// VLANs are 802.1Q tag IDs, outermost first. With two or more tags the
	// outermost uses the 802.1ad TPID (0x88a8), as QinQ does.
	VLANs []uint16

	SrcIP, DstIP     netip.Addr // same family; SrcIP may be anything (spoofing)
	SrcPort, DstPort uint16
	Proto            knock.Proto
	Flags            uint8 // TCP flag bits (knock.SYN, ...); ignored for UDP

	// HopByHop inserts an 8-byte IPv6 hop-by-hop options header (one PadN
	// option) between the IPv6 header and the rest. IPv6 only.
	HopByHop bool
	// FragOffset (in 8-byte units) and MoreFragments mark the packet as a
	// fragment: IPv4 header fields, or an IPv6 fragment header. The TCP or
	// UDP header is written after them anyway, so a decoder that ignores a
	// non-first fragment's offset would misread it as a knock.
	FragOffset    uint16
	MoreFragments bool

	Payload []byte
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Frame returns the Ethernet frame for spec, with lengths and checksums
// filled in.
func Frame(spec Spec) ([]byte, error) {
	src, dst := spec.SrcMAC, spec.DstMAC
	if src == nil {
		src = zeroMAC
	}
	if dst == nil {
		dst = zeroMAC
	}
	netType := layers.EthernetTypeIPv4
	if spec.DstIP.Is6() {
		netType = layers.EthernetTypeIPv6
	}
	link := []gopacket.SerializableLayer{}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: netType}
	link = append(link, eth)
	for i, id := range spec.VLANs {
		if id > 0xfff {
			return nil, fmt.Errorf("rawsend: vlan id %d out of range 0-4095", id)
		}
		tag := &layers.Dot1Q{VLANIdentifier: id, Type: netType}
		prev := link[len(link)-1]
		tpid := layers.EthernetTypeDot1Q
		if i == 0 && len(spec.VLANs) > 1 {
			tpid = layers.EthernetTypeQinQ
		}
		switch p := prev.(type) {
		case *layers.Ethernet:
			p.EthernetType = tpid
		case *layers.Dot1Q:
			p.Type = tpid
		}
		link = append(link, tag)
	}
	ip, err := ipLayers(spec)
	if err != nil {
		return nil, err
	}
	return serialize(append(link, ip...))
}

// IPPacket returns spec's packet without a link-layer header, as a raw-IP
// interface (tun, WireGuard) carries it. The MAC and VLAN fields are
// ignored.
func IPPacket(spec Spec) ([]byte, error) {
	ip, err := ipLayers(spec)
	if err != nil {
		return nil, err
	}
	return serialize(ip)
}

func serialize(ls []gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, fmt.Errorf("rawsend: serialize: %w", err)
	}
	return buf.Bytes(), nil
}

// ipLayers returns the IP header, any extension headers, the L4 header
// and the payload.
func ipLayers(spec Spec) ([]gopacket.SerializableLayer, error) {
	if !spec.SrcIP.IsValid() || !spec.DstIP.IsValid() {
		return nil, errors.New("rawsend: SrcIP and DstIP are required")
	}
	if spec.SrcIP.Is4() != spec.DstIP.Is4() {
		return nil, fmt.Errorf("rawsend: %s and %s are of different families", spec.SrcIP, spec.DstIP)
	}
	var l4 gopacket.SerializableLayer
	var tcp *layers.TCP
	var udp *layers.UDP
	switch spec.Proto {
	case knock.TCP:
		f := spec.Flags
		tcp = &layers.TCP{
			SrcPort: layers.TCPPort(spec.SrcPort), DstPort: layers.TCPPort(spec.DstPort),
			Seq: 1000, Window: 64240, DataOffset: 5,
			FIN: f&knock.FIN != 0, SYN: f&knock.SYN != 0, RST: f&knock.RST != 0,
			PSH: f&knock.PSH != 0, ACK: f&knock.ACK != 0, URG: f&knock.URG != 0,
		}
		if tcp.ACK {
			tcp.Ack = 1
		}
		l4 = tcp
	case knock.UDP:
		udp = &layers.UDP{SrcPort: layers.UDPPort(spec.SrcPort), DstPort: layers.UDPPort(spec.DstPort)}
		l4 = udp
	default:
		return nil, fmt.Errorf("rawsend: protocol %s is not tcp or udp", spec.Proto)
	}
	l4proto := layers.IPProtocol(spec.Proto)
	if spec.FragOffset > 0x1fff {
		return nil, fmt.Errorf("rawsend: fragment offset %d out of range 0-8191", spec.FragOffset)
	}
	frag := spec.FragOffset != 0 || spec.MoreFragments
	var out []gopacket.SerializableLayer
	var netLayer gopacket.NetworkLayer
	if spec.DstIP.Is4() {
		if spec.HopByHop {
			return nil, errors.New("rawsend: HopByHop needs IPv6 addresses")
		}
		src, dst := spec.SrcIP.As4(), spec.DstIP.As4()
		ip := &layers.IPv4{
			Version: 4, TTL: 64, Protocol: l4proto, Id: 1,
			SrcIP: src[:], DstIP: dst[:], FragOffset: spec.FragOffset,
		}
		if spec.MoreFragments {
			ip.Flags = layers.IPv4MoreFragments
		}
		out, netLayer = append(out, ip), ip
	} else {
		src, dst := spec.SrcIP.As16(), spec.DstIP.As16()
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src[:], DstIP: dst[:]}
		out, netLayer = append(out, ip), ip
		// Each header names the next; build the chain back to front.
		next := l4proto
		var ext []gopacket.SerializableLayer
		if frag {
			ext = append(ext, &layers.IPv6Fragment{
				NextHeader: next, FragmentOffset: spec.FragOffset,
				MoreFragments: spec.MoreFragments, Identification: 1,
			})
			next = layers.IPProtocolIPv6Fragment
		}
		if spec.HopByHop {
			hbh := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{{
				OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4), // PadN
			}}}
			hbh.NextHeader = next
			ext = append([]gopacket.SerializableLayer{hbh}, ext...)
			next = layers.IPProtocolIPv6HopByHop
		}
		ip.NextHeader = next
		out = append(out, ext...)
	}
	if tcp != nil {
		if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, fmt.Errorf("rawsend: tcp checksum: %w", err)
		}
	} else if err := udp.SetNetworkLayerForChecksum(netLayer); err != nil {
		return nil, fmt.Errorf("rawsend: udp checksum: %w", err)
	}
	out = append(out, l4)
	if len(spec.Payload) > 0 {
		out = append(out, gopacket.Payload(spec.Payload))
	}
	return out, nil
}
