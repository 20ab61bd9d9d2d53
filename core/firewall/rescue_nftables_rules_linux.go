package firewall

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rescue's objects in table inet sesame, as nft prints them (here with
// ports 22/tcp,2222/tcp and From 203.0.113.0/24):
//
//	set rescue_ports { type inet_proto . inet_service; elements = { tcp . 22, tcp . 2222 } }
//	set rescue_alive { type inet_proto . inet_service; flags timeout;
//		elements = { tcp . 22 timeout 30s expires 21s, tcp . 2222 timeout 30s expires 21s } }
//	chain rescue {
//		type filter hook input priority filter - 20; policy accept;
//		meta l4proto . th dport @rescue_ports jump rescue_gate
//	}
//	chain rescue_gate {
//		meta l4proto . th dport @rescue_alive goto rescue_closed
//		ip saddr 203.0.113.0/24 goto rescue_admit
//		goto rescue_closed
//	}
//	chain rescue_admit {
//		add @allow4 { ip saddr . meta l4proto . th dport timeout 500ms }
//		add @allow6 { ip6 saddr . meta l4proto . th dport timeout 500ms }
//		counter accept
//	}
//	chain rescue_closed {
//		ct state established,related accept
//		meta iiftype loopback accept
//		ip saddr . meta l4proto . th dport @allow4 accept
//		ip6 saddr . meta l4proto . th dport @allow6 accept
//		counter drop
//	}
//
// allow4 and allow6 are the grants backend's sets, shared on purpose (see
// the package doc); the rescue creates them when the grants backend has
// not. rescue_alive also holds the hold marker, key 0 . 0 without a
// timeout, which no packet can match.

// rescueAdmitTimeout is how long a source let past guard stays in allow4
// or allow6. Only the packet that adds it needs it (later packets of the
// connection are established, a retransmitted SYN adds it again), so it
// is short: once the heartbeat is back, a rescued source loses its way
// past guard within half a second, and the grants backend seldom sees one
// of these elements (it ignores them, with a warning, as not its own).
const rescueAdmitTimeout = 500 * time.Millisecond

// nftRescuePriority puts chain rescue before the grants backend's input
// chain (filter - 10), so that the source is in allow4/allow6 by the time
// guard looks.
var nftRescuePriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 20)

// rescueSets are rescue_ports (the ports the rescue admits) and
// rescue_alive (the heartbeat and the hold marker).
func rescueSets() []*nftables.Set {
	return []*nftables.Set{portSet(nftRescuePorts, false), portSet(nftRescueAlive, true)}
}

func rescueAliveSet() *nftables.Set { return portSet(nftRescueAlive, true) }

// rescueChains lists the chains in the order they can be created: every
// chain before the chains that jump to it.
func rescueChains() []*nftables.Chain {
	return []*nftables.Chain{
		{Table: sesameTable, Name: nftRescueClosed},
		{Table: sesameTable, Name: nftRescueAdmit},
		{Table: sesameTable, Name: nftRescueGate},
		{Table: sesameTable, Name: nftRescueBase, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftRescuePriority, Policy: &nftAccept},
	}
}

func rescueChainNames() []string {
	var names []string
	for _, c := range rescueChains() {
		names = append(names, c.Name)
	}
	return names
}

// matchSource matches packets from prefix p (of its own family).
func matchSource(p netip.Prefix) []expr.Any {
	v6 := p.Addr().Is6()
	off, n := uint32(12), uint32(4)
	if v6 {
		off, n = 8, 16
	}
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return append(nfprotoIs(reg32(0), v6),
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: reg32(0), DestRegister: reg32(0), Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: p.Addr().AsSlice()},
	)
}

func verdict(kind expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// rescueRules returns each of the rescue's chains' rules for spec s.
func rescueRules(s rescueSpec) map[string][]nftRule {
	base := []nftRule{{"sesame rescue: rescue ports go through rescue_gate", append(loadProtoPort(reg32(0)),
		&expr.Lookup{SourceRegister: reg32(0), SetName: nftRescuePorts},
		verdict(expr.VerdictJump, nftRescueGate))}}

	gate := []nftRule{{"sesame rescue: heartbeat present, rescue closed", append(loadProtoPort(reg32(0)),
		&expr.Lookup{SourceRegister: reg32(0), SetName: nftRescueAlive},
		verdict(expr.VerdictGoto, nftRescueClosed))}}
	if s.anyFrom {
		gate = append(gate, nftRule{"sesame rescue: no heartbeat, open to everyone",
			[]expr.Any{verdict(expr.VerdictGoto, nftRescueAdmit)}})
	}
	for _, p := range append(append([]netip.Prefix{}, s.from4...), s.from6...) {
		gate = append(gate, nftRule{"sesame rescue: no heartbeat, open to " + p.String(),
			append(matchSource(p), verdict(expr.VerdictGoto, nftRescueAdmit))})
	}
	gate = append(gate, nftRule{"sesame rescue: closed to this source",
		[]expr.Any{verdict(expr.VerdictGoto, nftRescueClosed)}})

	var admit []nftRule
	for _, v6 := range []bool{false, true} {
		set := allowSet(v6).Name
		ex := append(nfprotoIs(reg32(0), v6), loadSrcProtoPort(reg32(0), v6)...)
		ex = append(ex, &expr.Dynset{SrcRegKey: reg32(0), SetName: set,
			Operation: unix.NFT_DYNSET_OP_ADD, Timeout: rescueAdmitTimeout})
		admit = append(admit, nftRule{fmt.Sprintf("sesame rescue: let the source past the guard (%s)", set), ex})
	}
	admit = append(admit, nftRule{"sesame rescue: admitted", []expr.Any{&expr.Counter{}, verdict(expr.VerdictAccept, "")}})

	closed := acceptGranted(
		"sesame rescue: connections already open stay open",
		"sesame rescue: loopback is never closed",
		"sesame rescue: granted sources (allow4)",
		"sesame rescue: granted sources (allow6)",
		"sesame rescue: closed",
	)
	return map[string][]nftRule{nftRescueBase: base, nftRescueGate: gate, nftRescueAdmit: admit, nftRescueClosed: closed}
}
