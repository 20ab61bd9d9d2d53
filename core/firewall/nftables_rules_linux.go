package firewall

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The grants backend's objects of table inet sesame, as nft would print
// them (the rescue's are in rescue_nftables_rules_linux.go):
//
//	table inet sesame {
//		set allow4  { type ipv4_addr . inet_proto . inet_service; flags timeout; }
//		set allow6  { type ipv6_addr . inet_proto . inet_service; flags timeout; }
//		set guarded { type inet_proto . inet_service; }
//		chain input {
//			type filter hook input priority filter - 10; policy accept;
//			meta l4proto . th dport @guarded jump guard
//		}
//		chain guard {
//			ct state established,related accept
//			meta iiftype loopback accept
//			meta nfproto ipv4 ip saddr . meta l4proto . th dport @allow4 accept
//			meta nfproto ipv6 ip6 saddr . meta l4proto . th dport @allow6 accept
//			counter drop
//		}
//	}
//
// Only packets positively identified as going to a guarded port enter
// guard: a packet whose transport header cannot be read (a later fragment)
// fails the lookup and falls through to the policy, accept, leaving the
// admin's rules to decide. Loopback is exempt so local clients of a
// guarded service keep working.

var (
	sesameTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable}
	nftPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)
	nftAccept   = nftables.ChainPolicyAccept
)

// allowSet is allow4 or allow6: the grants, one element per source and
// port with a kernel timeout. The rescue adds to them too.
func allowSet(v6 bool) *nftables.Set {
	if v6 {
		return &nftables.Set{Table: sesameTable, Name: nftAllow6, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)}
	}
	return &nftables.Set{Table: sesameTable, Name: nftAllow4, HasTimeout: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)}
}

// portSet is a set of protocol and port (portKey): guarded, rescue_ports,
// rescue_alive.
func portSet(name string, timeout bool) *nftables.Set {
	return &nftables.Set{Table: sesameTable, Name: name, HasTimeout: timeout, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)}
}

// nftSets are the grants backend's sets.
func nftSets() []*nftables.Set {
	return []*nftables.Set{allowSet(false), allowSet(true), portSet(nftGuarded, false)}
}

// sameShape reports whether a set found in the kernel is the one wanted:
// same key type and timeout flag, and a plain set.
func sameShape(got, want *nftables.Set) bool {
	return got.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && got.KeyType.Bytes == want.KeyType.Bytes &&
		got.HasTimeout == want.HasTimeout && !got.IsMap && !got.Interval && !got.Constant
}

// sameChain reports whether a chain found in the kernel is the kind
// wanted: a regular chain, or a base chain of the same type, hook and
// priority.
func sameChain(got, want *nftables.Chain) bool {
	if want.Hooknum == nil {
		return got.Hooknum == nil
	}
	return got.Hooknum != nil && *got.Hooknum == *want.Hooknum && got.Priority != nil &&
		*got.Priority == *want.Priority && got.Type == want.Type
}

func nftInputChain() *nftables.Chain {
	return &nftables.Chain{
		Table: sesameTable, Name: nftInput, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftPriority, Policy: &nftAccept,
	}
}

func nftGuardChain() *nftables.Chain {
	return &nftables.Chain{Table: sesameTable, Name: nftGuard}
}

// nftRule is one rule of Sesame's chains; tag is stored as the rule's
// comment and is how inspect recognises Sesame's rules.
type nftRule struct {
	tag   string
	exprs []expr.Any
}

// ruleTag is the comment a rule carries; "" for none.
func ruleTag(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func tagData(tag string) []byte { return userdata.AppendString(nil, userdata.TypeComment, tag) }

// Registers: NFT_REG_1 is the first 128-bit register and overlaps the
// 32-bit registers 0, 1, 2, 3 (reg32(0)...); a concatenated lookup reads
// the key from consecutive 32-bit registers, each field zero-padded to 4
// bytes.
const reg1 = unix.NFT_REG_1

func reg32(n uint32) uint32 { return unix.NFT_REG32_00 + n }

// loadProtoPort loads l4proto into register first and the destination
// port into the 32-bit register after it.
func loadProtoPort(first uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: first},
		&expr.Payload{DestRegister: first + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// nfprotoIs matches IPv4 or IPv6 packets, through register reg.
func nfprotoIs(reg uint32, v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{p}},
	}
}

// loadSrcProtoPort puts saddr . l4proto . dport, the key of allow4 or
// allow6, in the registers from reg, which is reg1 or reg32(0).
func loadSrcProtoPort(reg uint32, v6 bool) []expr.Any {
	off, n, words := uint32(12), uint32(4), uint32(1)
	if v6 {
		off, n, words = 8, 16, 4
	}
	ex := []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	return append(ex, loadProtoPort(reg32(words))...)
}

func nftRules() (input, guard []nftRule) {
	jump := append(loadProtoPort(reg32(0)),
		&expr.Lookup{SourceRegister: reg1, SetName: nftGuarded},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: nftGuard},
	)
	input = []nftRule{{"sesame: guarded ports go through chain guard", jump}}
	guard = acceptGranted(
		"sesame: connections already open stay open",
		"sesame: loopback is never guarded",
		"sesame: granted IPv4 sources",
		"sesame: granted IPv6 sources",
		"sesame: everyone else is dropped",
	)
	return input, guard
}

// acceptGranted are the rules of chain guard, and of the rescue's
// rescue_closed with its own comments: a packet passes when its connection
// is already open, it came in on loopback, or its source holds a grant for
// its port (allow4, allow6); the rest is counted and dropped.
func acceptGranted(established, loopback, granted4, granted6, dropped string) []nftRule {
	estab := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{
			SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	lo := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	granted := func(v6 bool) []expr.Any {
		ex := append(nfprotoIs(reg1, v6), loadSrcProtoPort(reg1, v6)...)
		return append(ex,
			&expr.Lookup{SourceRegister: reg1, SetName: allowSet(v6).Name},
			&expr.Verdict{Kind: expr.VerdictAccept},
		)
	}
	return []nftRule{
		{established, estab},
		{loopback, lo},
		{granted4, granted(false)},
		{granted6, granted(true)},
		{dropped, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}},
	}
}
