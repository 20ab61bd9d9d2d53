package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// The iptables backend's rules, built and parsed without running iptables.

const (
	ipTable       = "filter"
	ipChain       = "SESAME"
	ipRescueChain = "SESAME-RESCUE" // the rescue's (rescue_iptables_rules.go)
	ipInput       = "INPUT"
	ipMaxPort     = 15 // multiport's limit per rule
)

// ipJump is the rule in INPUT that sends packets through Sesame's chain.
var ipJump = []string{"-j", ipChain}

// xtTimeMax is the last instant xt_time's 32-bit date_stop can hold.
var xtTimeMax = time.Unix(1<<31-1, 0)

// ruleSpec is the rule for entry e: source, protocol, ports, optionally a
// kernel-side stop time, the claims comment, ACCEPT.
func ruleSpec(e entry, withTime bool) []string {
	bits := 32
	if e.Src.Is6() {
		bits = 128
	}
	spec := []string{
		"-s", netip.PrefixFrom(e.Src, bits).String(),
		"-p", e.Proto.String(),
		"-m", "multiport", "--dports", e.Ports,
	}
	if withTime {
		spec = append(spec, "-m", "time", "--datestop", dateStop(e.Claims))
	}
	return append(spec, "-m", "comment", "--comment", e.comment(), "-j", "ACCEPT")
}

// dateStop is the last second in which the rule may match: xt_time matches
// while the current Unix second is at most --datestop (UTC), so the rule
// stops matching at the latest claim's Until, which is the deadline
// rounded up. It is belt and braces: Reconcile removes expired rules, and
// this stops them matching even if Sesame is not running to do it.
func dateStop(cs []claim) string {
	return stopSecond(cs).UTC().Format("2006-01-02T15:04:05")
}

// stopSecond is dateStop's instant: the second before the latest claim's
// Until, at most xtTimeMax.
func stopSecond(cs []claim) time.Time {
	var until int64
	for _, c := range cs {
		until = max(until, c.Until)
	}
	t := time.Unix(until-1, 0)
	if t.After(xtTimeMax) {
		t = xtTimeMax
	}
	return t
}

// parseRule reads one line of `iptables -S SESAME`. ok is false for lines
// that are not Sesame grant rules (the -N line, or a rule someone else
// put in the chain); those are left alone.
func parseRule(line string) (e entry, ok bool, err error) {
	args, err := splitRuleArgs(line)
	if err != nil {
		return e, false, err
	}
	if len(args) < 2 || args[0] != "-A" || args[1] != ipChain {
		return e, false, nil
	}
	var src, proto, ports, comment, target string
	for i := 2; i < len(args)-1; i++ {
		switch args[i] {
		case "-s":
			src = args[i+1]
		case "-p":
			proto = args[i+1]
		case "--dports":
			ports = args[i+1]
		case "--comment":
			comment = args[i+1]
		case "-j":
			target = args[i+1]
		}
	}
	cs, isOurs := parseComment(comment)
	if !isOurs || target != "ACCEPT" {
		return e, false, nil
	}
	pfx, err := netip.ParsePrefix(src)
	if err != nil || pfx.Bits() != pfx.Addr().BitLen() {
		return e, false, fmt.Errorf("sesame rule with source %q: want one address", src)
	}
	p, err := knock.ParseProto(proto)
	if err != nil {
		return e, false, fmt.Errorf("sesame rule: %w", err)
	}
	e = entry{entryKey: entryKey{Src: pfx.Addr(), Proto: p, Ports: ports}, Claims: cs, handle: args[2:]}
	if _, err := e.portNums(); err != nil {
		return e, false, fmt.Errorf("sesame rule ports %q: %w", ports, err)
	}
	return e, true, nil
}

// splitRuleArgs splits an iptables -S line as iptables quotes it: words
// separated by spaces, double quotes around words with spaces, backslash
// escaping a quote or backslash inside them.
func splitRuleArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '"':
			inQuote, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// isJumpTo reports whether an `iptables -S INPUT` line is exactly
// Sesame's jump to chain.
func isJumpTo(line, chain string) bool {
	return strings.TrimSpace(line) == "-A "+ipInput+" -j "+chain
}

// isJump reports whether an `iptables -S INPUT` line is the jump to SESAME.
func isJump(line string) bool { return isJumpTo(line, ipChain) }

// isOwnJump reports whether an INPUT rule is one of Sesame's jumps (to
// SESAME or to the rescue's SESAME-RESCUE). Detection counts them as
// Sesame's own, not as the admin's.
func isOwnJump(line string) bool { return isJumpTo(line, ipChain) || isJumpTo(line, ipRescueChain) }

// jumpPlace reads `iptables -S INPUT`: the 1-based positions of the jumps
// to chain, and how many rules at the top are Sesame's jumps (to SESAME or
// SESAME-RESCUE), the block Sesame's jumps belong in.
func jumpPlace(lines []string, chain string) (mine []int, block int) {
	pos := 0
	inBlock := true
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		pos++
		if isJumpTo(l, chain) {
			mine = append(mine, pos)
		}
		if inBlock && isOwnJump(l) {
			block = pos
		} else {
			inBlock = false
		}
	}
	return mine, block
}
