package capture

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrUnsupportedLink is returned for interfaces whose frames the decoder
// cannot place the IP header in (InfiniBand, some GRE modes, ...).
var ErrUnsupportedLink = errors.New("capture: unsupported link type")

// LinkTypeOf returns how frames captured on iface are framed, from the
// interface's ARPHRD type, in the calling thread's network namespace.
// (/sys/class/net would show the namespace /sys was mounted in, not the
// thread's.)
func LinkTypeOf(iface string) (LinkType, error) {
	hw, err := arphrd(iface)
	if err != nil {
		return 0, err
	}
	switch hw {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return LinkEthernet, nil
	case unix.ARPHRD_NONE, unix.ARPHRD_RAWIP, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6,
		unix.ARPHRD_SIT, unix.ARPHRD_PPP:
		// No link-layer header: a packet socket sees the IP header first.
		return LinkRawIP, nil
	}
	return 0, fmt.Errorf("%w: %s has ARPHRD type %d", ErrUnsupportedLink, iface, hw)
}

// arphrd reads the interface's hardware type with SIOCGIFHWADDR, on a
// packet socket that is never bound (so it receives nothing): the daemon
// already holds CAP_NET_RAW and AF_PACKET is allowed in its unit.
func arphrd(iface string) (uint16, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("capture: link type of %s: socket: %w", iface, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		return 0, fmt.Errorf("capture: link type of %s: %w", iface, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, fmt.Errorf("capture: link type of %s: SIOCGIFHWADDR: %w", iface, err)
	}
	// The union holds a struct sockaddr whose family is the ARPHRD type.
	return ifr.Uint16(), nil
}
