package capture

import "strconv"

// LinkType says where the IP header starts in a captured frame.
type LinkType uint8

const (
	// LinkEthernet frames carry a 14-byte Ethernet header, possibly followed
	// by 802.1Q/802.1ad tags. Loopback uses it too, with zero MACs.
	LinkEthernet LinkType = iota + 1
	// LinkRawIP frames start at the IP header (tun, WireGuard, ipip, sit,
	// PPP: devices without a link-layer header). The version nibble tells
	// IPv4 from IPv6.
	LinkRawIP
	// LinkSLL frames carry a 16-byte Linux cooked-capture (v1) header, as in
	// pcap files captured on "any".
	LinkSLL
)

func (l LinkType) String() string {
	switch l {
	case LinkEthernet:
		return "ethernet"
	case LinkRawIP:
		return "raw-ip"
	case LinkSLL:
		return "linux-sll"
	}
	return "link(" + strconv.Itoa(int(l)) + ")"
}
