package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// The rule appended over netlink is iptables-nft's own. For each entry
// the installed iptables-nft appends the rule from ruleSpec and Sesame
// appends xtRuleOf over netlink; read back from the kernel, the two are
// alike expression by expression, `iptables -S` lists them as the same
// line, which parseRule reads back as the entry, and `iptables -D` with
// the spec deletes each of them.
func TestXtRuleIsIPTablesNFTs(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTools(t, "iptables-nft", "ip6tables-nft")
	ns := netnstest.NewNS(t, "xtrule")
	until := time.Now().Add(time.Hour).Unix()
	many := make([]string, ipMaxPort)
	for i := range many {
		many[i] = fmt.Sprint(1000 + 7*i)
	}
	long := make([]claim, 0, 8)
	for i := 0; len(entry{Claims: append(long, claim{ID: fmt.Sprintf("door-with-a-long-name-%d", i), Until: until})}.comment()) <= maxCommentLen; i++ {
		long = append(long, claim{ID: fmt.Sprintf("door-with-a-long-name-%d", i), Until: until + int64(i)})
	}
	cases := []struct {
		e        entry
		withTime bool
	}{
		{entry{entryKey: entryKey{netip.MustParseAddr("192.0.2.7"), knock.TCP, "22"}, Claims: []claim{{"ssh-1", until}}}, true},
		{entry{entryKey: entryKey{netip.MustParseAddr("192.0.2.8"), knock.UDP, "53,123,5000"}, Claims: []claim{{"dns-1", until}}}, false},
		{entry{entryKey: entryKey{netip.MustParseAddr("2001:db8::7"), knock.TCP, strings.Join(many, ",")}, Claims: []claim{{"a-1", until}, {"b-2", until + 60}}}, true},
		{entry{entryKey: entryKey{netip.MustParseAddr("2001:db8::8"), knock.UDP, "65535"}, Claims: []claim{{"far-1", 1 << 40}}}, true},
		{entry{entryKey: entryKey{netip.MustParseAddr("198.51.100.1"), knock.TCP, "1,2"}, Claims: long}, true},
	}
	made := map[string]bool{}
	for _, c := range cases {
		name := c.e.entryKey.String()
		bin, fam := "iptables-nft", nftables.TableFamilyIPv4
		if c.e.Src.Is6() {
			bin, fam = "ip6tables-nft", nftables.TableFamilyIPv6
		}
		if !made[bin] {
			ns.MustRun(bin, "-t", ipTable, "-N", ipChain)
			made[bin] = true
		}
		r, err := xtRuleOf(c.e, c.withTime)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ns.MustRun(append([]string{bin, "-t", ipTable, "-A", ipChain}, r.spec...)...)
		if err := ns.Do(func() error { return appendNetlink(fam, []xtRule{r}) }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}

		var rules []*nftables.Rule
		if err := ns.Do(func() error {
			conn, err := nftables.New()
			if err != nil {
				return err
			}
			rules, err = conn.GetRules(&nftables.Table{Name: ipTable, Family: fam}, &nftables.Chain{Name: ipChain})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(rules) != 2 {
			t.Fatalf("%s: %d rules in the kernel, want iptables-nft's and Sesame's", name, len(rules))
		}
		if !reflect.DeepEqual(rules[0].Exprs, rules[1].Exprs) {
			t.Fatalf("%s: iptables-nft wrote\n%s\nSesame wrote\n%s", name, exprText(rules[0].Exprs), exprText(rules[1].Exprs))
		}

		var lines []string
		for _, l := range strings.Split(ns.MustRun(bin, "-t", ipTable, "-S", ipChain), "\n") {
			if strings.HasPrefix(l, "-A ") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 2 || lines[0] != lines[1] {
			t.Fatalf("%s: iptables -S lists\n%s", name, strings.Join(lines, "\n"))
		}
		got, ok, err := parseRule(lines[1])
		if err != nil || !ok || got.entryKey != c.e.entryKey || !reflect.DeepEqual(got.Claims, c.e.Claims) {
			t.Fatalf("%s: %q reads back as %+v (ours %v, %v)", name, lines[1], got, ok, err)
		}
		for range 2 {
			ns.MustRun(append([]string{bin, "-t", ipTable, "-D", ipChain}, r.spec...)...)
		}
		if out := ns.MustRun(bin, "-t", ipTable, "-S", ipChain); strings.Contains(out, "-A ") {
			t.Fatalf("%s: left after two deletes:\n%s", name, out)
		}
	}
}

func exprText(es []expr.Any) string {
	var b strings.Builder
	for _, e := range es {
		if m, ok := e.(*expr.Match); ok {
			fmt.Fprintf(&b, "  match %s rev %d %#v\n", m.Name, m.Rev, m.Info)
			continue
		}
		fmt.Fprintf(&b, "  %T %+v\n", e, e)
	}
	return b.String()
}

// A netlink append that fails costs the grant nothing: the backend
// re-reads the chain and runs iptables. After netlinkFailLimit failures
// in a row the family stops trying netlink. (A failure also leaves the
// nf_tables generation unknown, so the grant after it re-reads the chain
// and does not try netlink: the tries come every other grant.)
func TestIPTablesNetlinkFailureFallsBack(t *testing.T) {
	e := newTestEnv(t, variants[0])
	if e.v.kind != IPTablesNFT {
		t.Fatalf("variant %s", e.v.name)
	}
	b, rec := e.record()
	var tries int
	b.mu.Lock()
	b.appendNL = func(nftables.TableFamily, []xtRule) error {
		tries++
		return errors.New("injected failure")
	}
	b.mu.Unlock()
	src := families[0].client
	grants := 0
	grant := func() {
		t.Helper()
		port := knock.Port{Num: guardedPort + uint16(grants), Proto: knock.TCP}
		g := Grant{ID: fmt.Sprintf("fail-%d", grants), Src: src, Ports: []knock.Port{port}, Deadline: time.Now().Add(time.Minute)}
		grants++
		e.grant(g)
		calls := rec.take()
		if !slices.ContainsFunc(calls, func(c xtCall) bool { return !c.netlink() && slices.Contains(c.argv, "-A") }) {
			t.Fatalf("grant %d ran no iptables -A: %v", grants, calls)
		}
	}
	for tries < netlinkFailLimit {
		if grants > 3*netlinkFailLimit {
			t.Fatalf("%d grants tried netlink %d times", grants, tries)
		}
		grant()
	}
	for range 3 {
		grant()
	}
	if tries != netlinkFailLimit {
		t.Fatalf("netlink tried %d times, want %d and then no more", tries, netlinkFailLimit)
	}
	e.wantOpen(src, "after grants whose netlink appends failed")
	e.wantFamilyView(b, "after the fallbacks", 0)
	if n := len(e.kernelEntries(e.v.bins[0])); n != grants {
		t.Fatalf("%d rules for %d grants", n, grants)
	}
}

// Each rule of an append batch tells nft_compat its protocol (without
// it the kernel refuses multiport with EINVAL) and appends, as `iptables
// -A`; the batch is framed by begin and end for nf_tables.
func TestAppendBatch(t *testing.T) {
	var rules []xtRule
	for _, p := range []knock.Proto{knock.TCP, knock.UDP} {
		r, err := xtRuleOf(entry{entryKey: entryKey{netip.MustParseAddr("192.0.2.1"), p, "22"}, Claims: []claim{{"x-1", 1 << 31}}}, true)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	msgs, err := appendBatch(nftables.TableFamilyIPv4, rules)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 || msgs[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || msgs[3].Header.Type != unix.NFNL_MSG_BATCH_END {
		t.Fatalf("%d messages: %+v", len(msgs), msgs)
	}
	for i, want := range []uint32{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		m := msgs[1+i]
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) ||
			m.Header.Flags&(netlink.Acknowledge|netlink.Create|unix.NLM_F_APPEND) != netlink.Acknowledge|netlink.Create|unix.NLM_F_APPEND {
			t.Fatalf("rule %d: header %+v", i, m.Header)
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		ad.ByteOrder = binary.BigEndian
		var table, chain string
		proto, exprs := uint32(0), 0
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			case unix.NFTA_RULE_CHAIN:
				chain = ad.String()
			case unix.NFTA_RULE_EXPRESSIONS:
				ad.Nested(func(l *netlink.AttributeDecoder) error {
					for l.Next() {
						exprs++
					}
					return nil
				})
			case unix.NFTA_RULE_COMPAT:
				ad.Nested(func(c *netlink.AttributeDecoder) error {
					for c.Next() {
						if c.Type() == unix.NFTA_RULE_COMPAT_PROTO {
							proto = c.Uint32()
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		if table != ipTable || chain != ipChain || proto != want || exprs != len(rules[i].exprs) {
			t.Fatalf("rule %d: table %q chain %q compat proto %d, %d expressions", i, table, chain, proto, exprs)
		}
	}
}
