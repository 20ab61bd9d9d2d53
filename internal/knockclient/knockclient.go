// Package knockclient sends knocks the way knockd's knock client does: a
// TCP knock is a non-blocking connect that is closed at once (one SYN on
// the wire), a UDP knock is one datagram with a one-byte payload. It
// resolves the host once per port, like knock.
package knockclient

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// Options mirror knock's flags.
type Options struct {
	UDP     bool          // -u: every knock is UDP
	Delay   time.Duration // -d: wait between knocks
	Family  string        // "ip", "ip4" (-4) or "ip6" (-6)
	Verbose io.Writer     // -v: "hitting tcp HOST:PORT" lines; nil for quiet
}

// Target is one knock argument: a port (number or service name) and its
// protocol. Only the lowercase suffix "udp" selects UDP, as in knock.
type Target struct {
	Port  string
	Proto knock.Proto
}

// ParseTarget parses "port[:proto]" as knock does.
func ParseTarget(s string) Target {
	port, proto, ok := strings.Cut(s, ":")
	if ok && proto == "udp" {
		return Target{Port: port, Proto: knock.UDP}
	}
	return Target{Port: port, Proto: knock.TCP}
}

// Knock sends one knock per target to host, in order.
func Knock(ctx context.Context, host string, targets []Target, opts Options) error {
	if opts.Family == "" {
		opts.Family = "ip"
	}
	for i, t := range targets {
		proto := t.Proto
		if opts.UDP {
			proto = knock.UDP
		}
		addr, err := resolve(ctx, host, t.Port, proto, opts.Family)
		if err != nil {
			return err
		}
		if opts.Verbose != nil {
			fmt.Fprintf(opts.Verbose, "hitting %s %s:%s\n", proto, addr.Addr(), t.Port)
		}
		if err := Send(addr, proto); err != nil {
			return err
		}
		if opts.Delay > 0 && i < len(targets)-1 {
			select {
			case <-time.After(opts.Delay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func resolve(ctx context.Context, host, port string, proto knock.Proto, family string) (netip.AddrPort, error) {
	pn, err := net.DefaultResolver.LookupPort(ctx, proto.String(), port)
	if err != nil || pn <= 0 || pn > 65535 {
		return netip.AddrPort{}, fmt.Errorf("Failed to resolve hostname '%s' on port %s: %v", host, port, err)
	}
	var ip netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		ip = a
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, family, host)
		if err != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("Failed to resolve hostname '%s' on port %s: %v", host, port, err)
		}
		ip = ips[0]
	}
	ip = ip.Unmap()
	if (family == "ip4" && !ip.Is4()) || (family == "ip6" && !ip.Is6()) {
		return netip.AddrPort{}, fmt.Errorf("Failed to resolve hostname '%s' on port %s: address family mismatch", host, port)
	}
	return netip.AddrPortFrom(ip, uint16(pn)), nil
}

// Send sends one knock to addr.
func Send(addr netip.AddrPort, proto knock.Proto) error {
	var af int
	var sa unix.Sockaddr
	if a := addr.Addr(); a.Is4() {
		af, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		af, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16(), ZoneId: zoneID(a.Zone())}
	}
	typ := unix.SOCK_STREAM
	if proto == knock.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(af, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("Cannot open socket: %w", err)
	}
	defer unix.Close(fd)
	if proto == knock.UDP {
		if err := unix.Sendto(fd, []byte{0}, 0, sa); err != nil {
			return fmt.Errorf("send udp %s: %w", addr, err)
		}
		return nil
	}
	// The SYN leaves on connect; knock closes without waiting for an
	// answer, so neither do we.
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		return fmt.Errorf("connect tcp %s: %w", addr, err)
	}
	return nil
}

func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
