package firewall

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// The rescue's iptables objects, built and parsed without running
// anything. With ports 22/tcp and From 203.0.113.0/24:
//
//	ipset create sesame-rescue bitmap:port range 0-22 timeout 30
//	ipset add sesame-rescue 22 timeout 30         # the heartbeat
//	iptables -N SESAME-RESCUE
//	iptables -I INPUT 1 -j SESAME-RESCUE          # after -j SESAME when that is first
//	iptables -A SESAME-RESCUE -s 203.0.113.0/24 -p tcp -m multiport --dports 22 \
//	    -m set ! --match-set sesame-rescue dst \
//	    -m comment --comment sesame-rescue:tcp:22:from:203.0.113.0/24 -j ACCEPT
//
// The set keys on the port alone; `dst` makes xt_set look up the
// packet's destination port, so one set serves IPv4 and IPv6. Port 0,
// which no rule matches, is the hold marker, added without a timeout.

const (
	ipsetName       = "sesame-rescue"
	ipRescueTagHead = "sesame-rescue:"
)

// ipRescueRule is one ACCEPT of the rescue chain: its argv and its comment.
type ipRescueRule struct {
	tag  string
	spec []string
}

// ipRescueRules returns the rules for one family: one per protocol, chunk
// of 15 ports and source prefix. With From set and no prefix of this
// family, there are none: the rescue is closed to that family.
func ipRescueRules(s rescueSpec, v6 bool) []ipRescueRule {
	from := s.from4
	if v6 {
		from = s.from6
	}
	var srcs []string
	if s.anyFrom {
		srcs = []string{""}
	}
	for _, p := range from {
		srcs = append(srcs, p.String())
	}
	var out []ipRescueRule
	// One rule per run of ports, as multiport takes them, like a grant's.
	for _, pp := range splitPerProto(ipMaxPort)(Grant{Ports: s.ports}) {
		for _, src := range srcs {
			var spec []string
			who := "any"
			if src != "" {
				spec = append(spec, "-s", src)
				who = src
			}
			tag := ipRescueTagHead + pp.Proto.String() + ":" + pp.Ports + ":from:" + who
			spec = append(spec, "-p", pp.Proto.String(), "-m", "multiport", "--dports", pp.Ports,
				"-m", "set", "!", "--match-set", ipsetName, "dst",
				"-m", "comment", "--comment", tag, "-j", "ACCEPT")
			out = append(out, ipRescueRule{tag: tag, spec: spec})
		}
	}
	return out
}

// ipRescueTags returns the comments of the rescue's rules in an
// `iptables -S SESAME-RESCUE` listing, in order; rules without one are ""
// (someone else's, which makes the chain differ from the spec).
func ipRescueTags(lines []string) ([]string, error) {
	var tags []string
	for _, l := range lines {
		args, err := splitRuleArgs(l)
		if err != nil {
			return nil, err
		}
		if len(args) < 2 || args[0] != "-A" {
			continue
		}
		tag := ""
		for i := 2; i < len(args)-1; i++ {
			if args[i] == "--comment" && strings.HasPrefix(args[i+1], ipRescueTagHead) {
				tag = args[i+1]
			}
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// ipsetHeader is the create line of `ipset save sesame-rescue`.
type ipsetHeader struct {
	Type       string
	From, To   int
	HasTimeout bool
}

// ipsetDump is what `ipset save sesame-rescue` says.
type ipsetDump struct {
	Header ipsetHeader
	// Elements maps each port to its remaining timeout in whole seconds
	// (rounded down by the kernel); -1 means no timeout.
	Elements map[uint16]int
}

// parseIpsetSave reads `ipset save NAME` output.
func parseIpsetSave(out, name string) (ipsetDump, error) {
	d := ipsetDump{Elements: map[uint16]int{}}
	sawCreate := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[1] != name {
			continue
		}
		switch f[0] {
		case "create":
			sawCreate = true
			d.Header.Type = f[2]
			for i := 3; i < len(f); i++ {
				switch f[i] {
				case "range":
					if i+1 < len(f) {
						lo, hi, ok := strings.Cut(f[i+1], "-")
						a, err1 := strconv.Atoi(lo)
						b, err2 := strconv.Atoi(hi)
						if !ok || err1 != nil || err2 != nil {
							return d, fmt.Errorf("ipset %s: bad range %q", name, f[i+1])
						}
						d.Header.From, d.Header.To = a, b
					}
				case "timeout":
					d.Header.HasTimeout = true
				}
			}
		case "add":
			port, err := strconv.ParseUint(f[2], 10, 16)
			if err != nil {
				return d, fmt.Errorf("ipset %s: bad element %q", name, f[2])
			}
			left := -1
			for i := 3; i+1 < len(f); i++ {
				if f[i] == "timeout" {
					if n, err := strconv.Atoi(f[i+1]); err == nil && n > 0 {
						left = n
					} else if err == nil {
						// "timeout 0" is a permanent element only when it was
						// added so; a port's heartbeat is never permanent.
						left = 0
					}
				}
			}
			d.Elements[uint16(port)] = left
		}
	}
	if !sawCreate {
		return d, fmt.Errorf("ipset %s: no create line in %q", name, out)
	}
	return d, nil
}

// fits reports whether the set can carry spec s: a bitmap:port with
// timeouts whose range covers port 0 (the hold marker) to s's highest port.
func (h ipsetHeader) fits(s rescueSpec) bool {
	return h.Type == "bitmap:port" && h.HasTimeout && h.From == 0 && h.To >= int(s.maxPort())
}

// aliveFromDump reads the heartbeat from a dump: whether the hold marker
// is there and the least time left on the rescue ports' elements (0 if
// one is missing). A port listed with "timeout 0" has under a second left.
func aliveFromDump(d ipsetDump, ports []knock.Port) (held bool, left time.Duration) {
	if t, ok := d.Elements[0]; ok && t <= 0 {
		held = true
	}
	first := true
	for _, p := range ports {
		t, ok := d.Elements[p.Num]
		if !ok {
			return held, 0
		}
		l := time.Duration(t) * time.Second
		if t <= 0 {
			l = time.Second / 2
		}
		if first || l < left {
			left, first = l, false
		}
	}
	return held, left
}
