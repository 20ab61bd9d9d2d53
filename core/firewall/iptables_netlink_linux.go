package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// iptables-nft grants over netlink. A new rule is written as the
// nf_tables expressions iptables-nft itself writes for `iptables -A
// SESAME <ruleSpec>` (a meta l4proto and a source compare, then the
// multiport, time and comment matches through nft_compat, a counter,
// accept), so `iptables -S` lists it as its own, `iptables -D` with the
// same spec deletes it and a restarted Sesame reads it back like any
// other. TestXtRuleIsIPTablesNFTs compares the two, expression by
// expression, against the installed iptables-nft.
//
// Only appends take this path: a grant for a source with no rule yet,
// which is the knock's path. It saves the iptables process (its exec,
// dynamic loading and extension lookups: ~5 ms of the ~7 ms an
// `iptables -A` takes on the 2-core bench machine). Replacements,
// deletes and repairs still run iptables or iptables-restore, which find
// rules by their spec.

// xtRule is one rule to append over netlink: its iptables spec (what an
// `iptables -A SESAME` would be given; for logs and tests) and the
// expressions iptables-nft makes of it.
type xtRule struct {
	spec  []string
	proto byte // the IP protocol the rule matches, told to nft_compat
	exprs []expr.Any
}

// xtAppendFunc appends rules to SESAME in the filter table of family in
// one nf_tables transaction. Tests wrap it to record every call.
type xtAppendFunc func(family nftables.TableFamily, rules []xtRule) error

// netlinkFailLimit is how many netlink appends in a row may fail before
// a family goes back to running iptables for every change: one failure
// can be a race with someone deleting the chain (the fallback repairs
// it), several in a row mean this kernel or iptables does not take the
// rule this way.
const netlinkFailLimit = 3

// appendNetlink is the xtAppendFunc of a running daemon: one batch on
// its own netlink socket, in the calling thread's network namespace. The
// batch is built here rather than by nftables.Conn because each rule
// must carry NFTA_RULE_COMPAT with its protocol, as iptables-nft sends
// it: xt_multiport refuses a rule whose protocol it is not told, and
// google/nftables sets the attribute only for the tcp/udp matches.
func appendNetlink(family nftables.TableFamily, rules []xtRule) error {
	msgs, err := appendBatch(family, rules)
	if err != nil {
		return err
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer c.Close()
	// The kernel answers within the send; the deadline only bounds one
	// that does not.
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	if _, err := c.SendMessages(msgs); err != nil {
		return fmt.Errorf("netlink: append to %s %s: send: %w", ipTable, ipChain, err)
	}
	// One answer per rule (each asks for an acknowledgement); an aborted
	// batch answers each rule too, the failing ones with their error.
	var errs []error
	for range rules {
		if _, err := c.Receive(); err != nil {
			errs = append(errs, err)
			var t interface{ Timeout() bool }
			if errors.As(err, &t) && t.Timeout() {
				break // no answer within the deadline: do not wait for more
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netlink: append to %s %s: %w", ipTable, ipChain, err)
	}
	return nil
}

// appendBatch is one nf_tables transaction appending rules to SESAME in
// family's filter table: batch begin, a NEWRULE per rule (with
// NLM_F_APPEND, as `iptables -A`), batch end.
func appendBatch(family nftables.TableFamily, rules []xtRule) ([]netlink.Message, error) {
	batchHeader := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES} // res_id, big endian
	msgs := []netlink.Message{{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   batchHeader,
	}}
	for _, r := range rules {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.String(unix.NFTA_RULE_TABLE, ipTable)
		ae.String(unix.NFTA_RULE_CHAIN, ipChain)
		ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(list *netlink.AttributeEncoder) error {
			for _, e := range r.exprs {
				b, err := expr.Marshal(byte(family), e)
				if err != nil {
					return err
				}
				list.Bytes(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, b)
			}
			return nil
		})
		ae.Nested(unix.NFTA_RULE_COMPAT, func(c *netlink.AttributeEncoder) error {
			c.Uint32(unix.NFTA_RULE_COMPAT_PROTO, uint32(r.proto))
			c.Uint32(unix.NFTA_RULE_COMPAT_FLAGS, 0)
			return nil
		})
		attrs, err := ae.Encode()
		if err != nil {
			return nil, fmt.Errorf("netlink: rule %s: %w", strings.Join(r.spec, " "), err)
		}
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE),
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | unix.NLM_F_APPEND,
			},
			Data: append([]byte{byte(family), unix.NFNETLINK_V0, 0, 0}, attrs...),
		})
	}
	return append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   batchHeader,
	}), nil
}

// xtRuleOf is e's rule as iptables-nft writes it.
func xtRuleOf(e entry, withTime bool) (xtRule, error) {
	var proto byte
	switch e.Proto {
	case knock.TCP:
		proto = unix.IPPROTO_TCP
	case knock.UDP:
		proto = unix.IPPROTO_UDP
	default:
		return xtRule{}, fmt.Errorf("rule for %s: protocol %v: %w", e.entryKey, e.Proto, ErrInvalidGrant)
	}
	ports, err := e.portNums()
	if err != nil {
		return xtRule{}, fmt.Errorf("rule for %s: %w", e.entryKey, err)
	}
	mp, err := multiportInfo(ports)
	if err != nil {
		return xtRule{}, fmt.Errorf("rule for %s: %w", e.entryKey, err)
	}
	comment := xt.Comment(e.comment())
	if len(comment) >= xt.CommentSize {
		return xtRule{}, fmt.Errorf("rule for %s: comment of %d bytes: %w", e.entryKey, len(comment), ErrInvalidGrant)
	}
	// The source's offset in the IPv4 or IPv6 header.
	off, n := uint32(12), uint32(4)
	if e.Src.Is6() {
		off, n = 8, 16
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: e.Src.AsSlice()},
		&expr.Match{Name: "multiport", Rev: 1, Info: &mp},
	}
	if withTime {
		ti := timeInfo(stopSecond(e.Claims).Unix())
		exprs = append(exprs, &expr.Match{Name: "time", Rev: 0, Info: &ti})
	}
	exprs = append(exprs,
		&expr.Match{Name: "comment", Rev: 0, Info: &comment},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	return xtRule{spec: ruleSpec(e, withTime), proto: proto, exprs: exprs}, nil
}

// multiportInfo is struct xt_multiport_v1 for `--dports` of single
// ports: flags (XT_MULTIPORT_DESTINATION), count, ports[15] and
// pflags[15] (no ranges), invert; integers in host byte order, as
// iptables hands them to the kernel.
func multiportInfo(ports []uint16) (xt.Unknown, error) {
	if len(ports) == 0 || len(ports) > ipMaxPort {
		return nil, fmt.Errorf("%d ports in one multiport match (1 to %d): %w", len(ports), ipMaxPort, ErrInvalidGrant)
	}
	const destination = 1 // XT_MULTIPORT_DESTINATION
	b := make([]byte, 48)
	b[0], b[1] = destination, byte(len(ports))
	for i, p := range ports {
		binary.NativeEndian.PutUint16(b[2+2*i:], p)
	}
	return xt.Unknown(b), nil
}

// timeInfo is struct xt_time_info for `--datestop` stop (Unix seconds,
// UTC) and nothing else: from the epoch, all day, every day of the month
// and week, the kernel's clock taken as UTC.
func timeInfo(stop int64) xt.Unknown {
	const (
		maxDaytime   = 24*60*60 - 1 // XT_TIME_MAX_DAYTIME
		allMonthdays = 0xFFFFFFFE   // XT_TIME_ALL_MONTHDAYS
		allWeekdays  = 0xFE         // XT_TIME_ALL_WEEKDAYS
	)
	b := make([]byte, 24)
	binary.NativeEndian.PutUint32(b[4:], uint32(stop)) // date_stop; date_start 0
	binary.NativeEndian.PutUint32(b[12:], maxDaytime)  // daytime_stop; daytime_start 0
	binary.NativeEndian.PutUint32(b[16:], allMonthdays)
	b[20] = allWeekdays // flags 0: UTC
	return xt.Unknown(b)
}

// netlinkAppendsLocked returns the rules of plan p when f takes them over
// netlink: f is iptables-nft, netlink appends have not kept failing, and
// p only adds rules.
func (b *ipTablesBackend) netlinkAppendsLocked(f *ipFamily, p []change) ([]xtRule, bool) {
	if !f.nft || b.appendNL == nil || f.nlFails >= netlinkFailLimit || len(p) == 0 {
		return nil, false
	}
	rules := make([]xtRule, 0, len(p))
	for _, c := range p {
		if c.Old != nil || c.New == nil {
			return nil, false
		}
		r, err := xtRuleOf(*c.New, b.withTime)
		if err != nil {
			return nil, false // iptables says what is wrong with it
		}
		rules = append(rules, r)
	}
	return rules, true
}

// appendNetlinkLocked commits rules to f in one transaction and accounts
// for it like an iptables invocation.
func (b *ipTablesBackend) appendNetlinkLocked(f *ipFamily, rules []xtRule) error {
	err := b.appendNL(f.nfFamily, rules)
	b.committedLocked(f, err)
	if err == nil {
		f.nlFails = 0
		return nil
	}
	f.nlFails++
	if f.nlFails == netlinkFailLimit {
		b.log.Warn("appending grant rules over netlink keeps failing; running iptables for every grant from now on",
			"binary", f.label, "error", err)
	}
	return fmt.Errorf("%s over netlink: %w", f.label, err)
}
