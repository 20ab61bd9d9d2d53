package preflight

import (
	"errors"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/sesame-knock/sesame/internal/trust"
	"golang.org/x/sys/unix"
)

func access(path string, mode uint32) error { return unix.Access(path, mode) }

func link(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, errNoInterface
	}
	if err != nil {
		return false, err
	}
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown, nil
}

// defaultRouteInterfaces names the interfaces that carry a default route
// (IPv4 or IPv6), in routing table order, without duplicates: what
// sesamed listens on when no Interface is set.
func defaultRouteInterfaces() []string {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	seen := map[int]bool{}
	var out []string
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex == 0 || seen[r.LinkIndex] {
			continue
		}
		if ifi, err := net.InterfaceByIndex(r.LinkIndex); err == nil {
			seen[r.LinkIndex] = true
			out = append(out, ifi.Name)
		}
	}
	return out
}

func trustTree(dir string) error { return trust.Tree(dir) }

func trustPath(path string) error { return trust.Path(path) }
