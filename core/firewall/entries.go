package firewall

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// entryKey identifies a kernel entry by what it matches.
type entryKey struct {
	Src   netip.Addr
	Proto knock.Proto
	Ports string // sorted port numbers joined by commas: "22" or "22,443"
}

func (k entryKey) String() string { return k.Src.String() + " " + k.Proto.String() + "/" + k.Ports }

// portNums parses Ports.
func (k entryKey) portNums() ([]uint16, error) {
	var out []uint16
	for _, s := range strings.Split(k.Ports, ",") {
		n, err := knock.ParsePortNum(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// entry is one kernel entry and the grants that want it.
type entry struct {
	entryKey
	Claims []claim // sorted by ID, one per ID
	// Expiry is when the entry stops being needed: the latest claim, with
	// the exact deadline of the grant being added rather than its rounded
	// second, so a kernel timeout is as precise as the caller's deadline.
	Expiry time.Time
	// handle lets the backend find the kernel object again (iptables: the
	// rule's arguments as listed); nil for entries the planner creates.
	handle any
}

func (e entry) comment() string { return formatComment(e.Claims) }

// splitFunc maps a normalized grant to the keys of the entries it needs.
type splitFunc func(Grant) []entryKey

// splitPerPort gives one key per port (nftables set elements).
func splitPerPort(g Grant) []entryKey {
	keys := make([]entryKey, len(g.Ports))
	for i, p := range g.Ports {
		keys[i] = entryKey{Src: g.Src, Proto: p.Proto, Ports: strconv.Itoa(int(p.Num))}
	}
	return keys
}

// splitPerProto gives one key per protocol and run of at most max ports
// (iptables multiport matches at most 15).
func splitPerProto(max int) splitFunc {
	return func(g Grant) []entryKey {
		var keys []entryKey
		var run []string
		flush := func(p knock.Proto) {
			if len(run) > 0 {
				keys = append(keys, entryKey{Src: g.Src, Proto: p, Ports: strings.Join(run, ",")})
				run = run[:0]
			}
		}
		for i, p := range g.Ports { // sorted by proto, then number
			if i > 0 && g.Ports[i-1].Proto != p.Proto {
				flush(g.Ports[i-1].Proto)
			}
			run = append(run, strconv.Itoa(int(p.Num)))
			if len(run) == max {
				flush(p.Proto)
			}
		}
		if len(g.Ports) > 0 {
			flush(g.Ports[len(g.Ports)-1].Proto)
		}
		return keys
	}
}

// groupEntries groups entries by key, keeping first-seen order. A key
// grantsFromEntries rebuilds grants from entries: one per (ID, source),
// with the union of the ports of its entries and the earliest deadline
// among them, so that an entry a crash left stale shows up as a
// difference from what Sesame wants.
func grantsFromEntries(es []entry) []Grant {
	type gk struct {
		id  string
		src netip.Addr
	}
	var order []gk
	out := make(map[gk]*Grant)
	for _, e := range es {
		nums, err := e.portNums()
		if err != nil {
			continue
		}
		for _, c := range e.Claims {
			k := gk{c.ID, e.Src}
			g := out[k]
			dl := time.Unix(c.Until, 0)
			if g == nil {
				g = &Grant{ID: c.ID, Src: e.Src, Deadline: dl}
				out[k] = g
				order = append(order, k)
			}
			if dl.Before(g.Deadline) {
				g.Deadline = dl
			}
			for _, n := range nums {
				g.Ports = append(g.Ports, knock.Port{Num: n, Proto: e.Proto})
			}
		}
	}
	grants := make([]Grant, 0, len(order))
	for _, k := range order {
		g := out[k]
		g.Ports = sortPorts(g.Ports)
		grants = append(grants, *g)
	}
	slices.SortStableFunc(grants, func(a, b Grant) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), a.Src.Compare(b.Src))
	})
	return grants
}
