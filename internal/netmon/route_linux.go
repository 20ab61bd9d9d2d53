package netmon

import (
	"net"

	"github.com/vishvananda/netlink"
)

// DefaultRouteInterfaces names the interfaces that carry a default route
// (IPv4 or IPv6), in routing table order, without duplicates.
func DefaultRouteInterfaces() []string {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	seen := map[int]bool{}
	var out []string
	for _, r := range routes {
		if !isDefault(r.Dst) || r.LinkIndex == 0 || seen[r.LinkIndex] {
			continue
		}
		if ifi, err := net.InterfaceByIndex(r.LinkIndex); err == nil {
			seen[r.LinkIndex] = true
			out = append(out, ifi.Name)
		}
	}
	return out
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}
