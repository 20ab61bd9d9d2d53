package firewall

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The objects of table inet sesame, as nft would print them:
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

func nftSets() []*nftables.Set {
	return []*nftables.Set{
		{
			Table: sesameTable, Name: nftAllow4, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
		},
		{
			Table: sesameTable, Name: nftAllow6, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService),
		},
		{
			Table: sesameTable, Name: nftGuarded, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
		},
	}
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
// comment and is how Setup recognises its rules.
type nftRule struct {
	tag   string
	exprs []expr.Any
}

// Registers: NFT_REG_1 is the first 128-bit register and overlaps the
// 32-bit registers 8, 9, 10...; a concatenated lookup reads the key from
// consecutive 32-bit registers starting at NFT_REG_1.
const (
	reg1   = unix.NFT_REG_1
	reg32x = unix.NFT_REG32_00 // + n: the n-th 32-bit register
)

// loadProtoPort loads l4proto into the 32-bit register first and the
// destination port into the one after it.
func loadProtoPort(first uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: first},
		&expr.Payload{DestRegister: first + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func nftRules() (input, guard []nftRule) {
	jump := append(loadProtoPort(reg32x),
		&expr.Lookup{SourceRegister: reg1, SetName: nftGuarded},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: nftGuard},
	)
	input = []nftRule{{"sesame: guarded ports go through chain guard", jump}}

	established := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{
			SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	loopback := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	allow := func(nfproto byte, addrOff, addrLen, addrRegs uint32, set string) []expr.Any {
		ex := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
		}
		ex = append(ex, loadProtoPort(reg32x+addrRegs)...)
		return append(ex,
			&expr.Lookup{SourceRegister: reg1, SetName: set},
			&expr.Verdict{Kind: expr.VerdictAccept},
		)
	}
	guard = []nftRule{
		{"sesame: connections already open stay open", established},
		{"sesame: loopback is never guarded", loopback},
		{"sesame: granted IPv4 sources", allow(unix.NFPROTO_IPV4, 12, 4, 1, nftAllow4)},
		{"sesame: granted IPv6 sources", allow(unix.NFPROTO_IPV6, 8, 16, 4, nftAllow6)},
		{"sesame: everyone else is dropped", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}},
	}
	return input, guard
}

func ruleTag(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func tagData(tag string) []byte { return userdata.AppendString(nil, userdata.TypeComment, tag) }
