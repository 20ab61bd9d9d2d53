package netmon

import (
	"net"
	"net/netip"
	"slices"
)

// HostAddrs lists every address of the host's interfaces and the
// broadcast address of each IPv4 subnet on them (sorted): no knock comes
// from those.
func HostAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		pn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		out = append(out, ip)
		if ones, bits := pn.Mask.Size(); ip.Is4() && bits == 32 && ones < 31 {
			b := ip.As4()
			for i := range b {
				b[i] |= ^pn.Mask[len(pn.Mask)-4+i]
			}
			out = append(out, netip.AddrFrom4(b))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// InterfaceAddrs lists the addresses on the named interfaces; missing
// interfaces contribute none.
func InterfaceAddrs(names []string) []netip.Addr {
	var out []netip.Addr
	for _, n := range names {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			continue
		}
		as, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	ones, bits := n.Mask.Size()
	if addr.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(addr, ones), true
}
