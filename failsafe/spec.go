package failsafe

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// MinAfter is the shortest Rescue_After accepted: ipset keeps element
// timeouts in whole seconds, and the heartbeat is refreshed three times
// per period.
const MinAfter = time.Second

// maxAfter is the longest timeout an ipset element can carry.
const maxAfter = 2147483 * time.Second

// spec is the validated form of Options that the kernel gates install:
// ports sorted and deduplicated, prefixes masked and split by family.
type spec struct {
	Ports []knock.Port
	// From4 and From6 are the sources that may use the rescue; AnyFrom
	// means Rescue_From was empty (everyone). With AnyFrom false, a
	// family without prefixes gets no rescue at all.
	From4, From6 []netip.Prefix
	AnyFrom      bool
	After        time.Duration
}

func newSpec(o Options) (spec, error) {
	s := spec{After: o.After, AnyFrom: len(o.From) == 0}
	for _, p := range o.Ports {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return s, fmt.Errorf("%w: port %s (want TCP or UDP 1-65535)", ErrBadOptions, p)
		}
		s.Ports = append(s.Ports, p)
	}
	slices.SortFunc(s.Ports, comparePorts)
	s.Ports = slices.Compact(s.Ports)
	if o.After < MinAfter || o.After > maxAfter {
		return s, fmt.Errorf("%w: Rescue_After %s (want %s to %s)", ErrBadOptions, o.After, MinAfter, maxAfter)
	}
	for _, p := range o.From {
		if !p.IsValid() {
			return s, fmt.Errorf("%w: Rescue_From prefix %s", ErrBadOptions, p)
		}
		p = unmapPrefix(p).Masked()
		if p.Addr().Is4() {
			s.From4 = append(s.From4, p)
		} else {
			s.From6 = append(s.From6, p)
		}
	}
	for _, l := range []*[]netip.Prefix{&s.From4, &s.From6} {
		slices.SortFunc(*l, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		*l = slices.Compact(*l)
	}
	return s, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96): the
// kernel sees IPv4 packets as IPv4.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func comparePorts(a, b knock.Port) int {
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	return int(a.Num) - int(b.Num)
}

// seconds is After as ipset wants it: whole seconds, rounded up, so the
// kernel never opens the rescue earlier than configured.
func (s spec) seconds() uint32 {
	return uint32(math.Ceil(s.After.Seconds()))
}

// portsByProto groups the port numbers by protocol, TCP first.
func (s spec) portsByProto() []protoPorts {
	var out []protoPorts
	for _, p := range s.Ports {
		if len(out) == 0 || out[len(out)-1].Proto != p.Proto {
			out = append(out, protoPorts{Proto: p.Proto})
		}
		last := &out[len(out)-1]
		last.Nums = append(last.Nums, p.Num)
	}
	return out
}

type protoPorts struct {
	Proto knock.Proto
	Nums  []uint16
}

// maxPort is the highest port number, which bounds the ipset bitmap.
func (s spec) maxPort() uint16 {
	var m uint16
	for _, p := range s.Ports {
		m = max(m, p.Num)
	}
	return m
}

// describe is the spec in a few words for logs and STATUS.
func (s spec) describe() string {
	d := knock.FormatSequence(s.Ports)
	if !s.AnyFrom {
		var from []string
		for _, p := range append(slices.Clone(s.From4), s.From6...) {
			from = append(from, p.String())
		}
		d += " from " + strings.Join(from, ",")
	}
	return d
}
