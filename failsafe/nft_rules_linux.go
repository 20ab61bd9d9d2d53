package failsafe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// The rescue's objects in table inet sesame, as nft prints them (here with
// Rescue_Ports = 22/tcp,2222/tcp and Rescue_From = 203.0.113.0/24):
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
// allow4 and allow6 are core/firewall's grant sets, shared on purpose (see
// the package doc); the rescue creates them, with exactly their shape,
// when the grants backend has not. rescue_alive also holds the hold
// marker, key 0 . 0 without a timeout, which no packet can match.

const (
	nftTable     = "sesame"
	nftAllow4    = "allow4" // core/firewall's
	nftAllow6    = "allow6" // core/firewall's
	nftPorts     = "rescue_ports"
	nftAlive     = "rescue_alive"
	nftBase      = "rescue"
	nftGateChain = "rescue_gate"
	nftAdmit     = "rescue_admit"
	nftClosed    = "rescue_closed"
)

// admitTimeout is how long a source let past the guard stays in allow4 or
// allow6. Only the packet that adds it needs it (later packets of the
// connection are established, a retransmitted SYN adds it again), so it
// is short: once the heartbeat is back, a rescued source loses its way
// past the guard within half a second, and core/firewall seldom sees one
// of these elements (it ignores them, with a warning, as not its own).
const admitTimeout = 500 * time.Millisecond

var (
	sesameTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable}
	// Before core/firewall's input chain (filter - 10), so that the
	// source is in allow4/allow6 by the time its guard looks.
	nftBasePriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 20)
	nftPolicyAccept = nftables.ChainPolicyAccept
)

// Registers, in 32-bit units: a concatenated key is read from
// consecutive 32-bit registers, each field zero-padded to 4 bytes.
func reg32(n uint32) uint32 { return unix.NFT_REG32_00 + n }

// grantSets are core/firewall's allow4 and allow6, shape for shape.
func grantSets() []*nftables.Set {
	return []*nftables.Set{
		{Table: sesameTable, Name: nftAllow4, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)},
		{Table: sesameTable, Name: nftAllow6, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)},
	}
}

func rescueSets() []*nftables.Set {
	pp := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	return []*nftables.Set{
		{Table: sesameTable, Name: nftPorts, Concatenation: true, KeyType: pp},
		{Table: sesameTable, Name: nftAlive, Concatenation: true, HasTimeout: true, KeyType: pp},
	}
}

func sameShape(got, want *nftables.Set) bool {
	return got.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && got.KeyType.Bytes == want.KeyType.Bytes &&
		got.HasTimeout == want.HasTimeout && !got.IsMap && !got.Interval && !got.Constant
}

func baseChain() *nftables.Chain {
	return &nftables.Chain{Table: sesameTable, Name: nftBase, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftBasePriority, Policy: &nftPolicyAccept}
}

// rescueChains lists the chains in the order they can be created: every
// chain before the chains that jump to it.
func rescueChains() []*nftables.Chain {
	return []*nftables.Chain{
		{Table: sesameTable, Name: nftClosed},
		{Table: sesameTable, Name: nftAdmit},
		{Table: sesameTable, Name: nftGateChain},
		baseChain(),
	}
}

// protoPortKey is the key of rescue_ports and rescue_alive: protocol and
// port, each in its own zero-padded 32-bit register.
func protoPortKey(p knock.Port) []byte {
	k := make([]byte, 8)
	k[0] = byte(p.Proto)
	binary.BigEndian.PutUint16(k[4:], p.Num)
	return k
}

// holdKey is the hold marker: protocol 0, port 0, never a packet's.
var holdKey = make([]byte, 8)

func parseProtoPortKey(b []byte) (knock.Port, bool) {
	if len(b) != 8 {
		return knock.Port{}, false
	}
	return knock.Port{Proto: knock.Proto(b[0]), Num: binary.BigEndian.Uint16(b[4:])}, true
}

// nftRule is one of the rescue's rules; tag is stored as its comment and
// is how Install recognises them.
type nftRule struct {
	tag   string
	exprs []expr.Any
}

func loadProtoPort(first uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(first)},
		&expr.Payload{DestRegister: reg32(first + 1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func matchNFProto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: []byte{p}},
	}
}

// loadSrcProtoPort puts saddr . l4proto . dport in the registers from
// reg32(0), the key layout of allow4 and allow6.
func loadSrcProtoPort(v6 bool) []expr.Any {
	off, n, words := uint32(12), uint32(4), uint32(1)
	if v6 {
		off, n, words = 8, 16, 4
	}
	ex := []expr.Any{&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	return append(ex, loadProtoPort(words)...)
}

func nfproto(v6 bool) byte {
	if v6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

func grantSetName(v6 bool) string {
	if v6 {
		return nftAllow6
	}
	return nftAllow4
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
	ex := matchNFProto(nfproto(v6))
	return append(ex,
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: reg32(0), DestRegister: reg32(0), Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: p.Addr().AsSlice()},
	)
}

func verdict(kind expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// nftRules returns each chain's rules for spec s.
func nftRules(s spec) map[string][]nftRule {
	base := []nftRule{{"sesame rescue: rescue ports go through rescue_gate", append(loadProtoPort(0),
		&expr.Lookup{SourceRegister: reg32(0), SetName: nftPorts},
		verdict(expr.VerdictJump, nftGateChain))}}

	gate := []nftRule{{"sesame rescue: heartbeat present, rescue closed", append(loadProtoPort(0),
		&expr.Lookup{SourceRegister: reg32(0), SetName: nftAlive},
		verdict(expr.VerdictGoto, nftClosed))}}
	if s.AnyFrom {
		gate = append(gate, nftRule{"sesame rescue: no heartbeat, open to everyone",
			[]expr.Any{verdict(expr.VerdictGoto, nftAdmit)}})
	}
	for _, p := range append(append([]netip.Prefix{}, s.From4...), s.From6...) {
		gate = append(gate, nftRule{"sesame rescue: no heartbeat, open to " + p.String(),
			append(matchSource(p), verdict(expr.VerdictGoto, nftAdmit))})
	}
	gate = append(gate, nftRule{"sesame rescue: closed to this source",
		[]expr.Any{verdict(expr.VerdictGoto, nftClosed)}})

	var admit []nftRule
	for _, v6 := range []bool{false, true} {
		ex := matchNFProto(nfproto(v6))
		ex = append(ex, loadSrcProtoPort(v6)...)
		ex = append(ex, &expr.Dynset{SrcRegKey: reg32(0), SetName: grantSetName(v6),
			Operation: unix.NFT_DYNSET_OP_ADD, Timeout: admitTimeout})
		admit = append(admit, nftRule{fmt.Sprintf("sesame rescue: let the source past the guard (%s)", grantSetName(v6)), ex})
	}
	admit = append(admit, nftRule{"sesame rescue: admitted", []expr.Any{&expr.Counter{}, verdict(expr.VerdictAccept, "")}})

	established := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg32(0)},
		&expr.Bitwise{SourceRegister: reg32(0), DestRegister: reg32(0), Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg32(0), Data: binaryutil.NativeEndian.PutUint32(0)},
		verdict(expr.VerdictAccept, ""),
	}
	loopback := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: reg32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg32(0), Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
		verdict(expr.VerdictAccept, ""),
	}
	closed := []nftRule{
		{"sesame rescue: connections already open stay open", established},
		{"sesame rescue: loopback is never closed", loopback},
	}
	for _, v6 := range []bool{false, true} {
		ex := matchNFProto(nfproto(v6))
		ex = append(ex, loadSrcProtoPort(v6)...)
		ex = append(ex, &expr.Lookup{SourceRegister: reg32(0), SetName: grantSetName(v6)}, verdict(expr.VerdictAccept, ""))
		closed = append(closed, nftRule{"sesame rescue: granted sources (" + grantSetName(v6) + ")", ex})
	}
	closed = append(closed, nftRule{"sesame rescue: closed", []expr.Any{&expr.Counter{}, verdict(expr.VerdictDrop, "")}})

	return map[string][]nftRule{nftBase: base, nftGateChain: gate, nftAdmit: admit, nftClosed: closed}
}

func ruleTag(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func tagData(tag string) []byte { return userdata.AppendString(nil, userdata.TypeComment, tag) }
