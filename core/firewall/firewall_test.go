package firewall

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Kind
		err  bool
	}{
		{"auto", Auto, false},
		{"IPTables", IPTables, false},
		{" iptables-nft ", IPTablesNFT, false},
		{"iptables-legacy", IPTablesLegacy, false},
		{"nftables", NFTables, false},
		{"nft", 0, true},
		{"", 0, true},
		{"command", 0, true},
	} {
		got, err := ParseKind(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseKind(%q) = %v, %v", tc.in, got, err)
		}
		if !tc.err && got.String() != strings.ToLower(strings.TrimSpace(tc.in)) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

func TestNormalize(t *testing.T) {
	dl := time.Unix(1_800_000_000, 0)
	ok := Grant{ID: "door_1-x", Src: netip.MustParseAddr("::ffff:10.0.0.9"), Ports: []knock.Port{tcp(443), udp(53), tcp(22), tcp(443)}, Deadline: dl}
	g, err := normalize(ok)
	if err != nil {
		t.Fatal(err)
	}
	if g.Src != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("mapped address not unmapped: %s", g.Src)
	}
	if want := []knock.Port{tcp(22), tcp(443), udp(53)}; !reflect.DeepEqual(g.Ports, want) {
		t.Errorf("ports %v, want %v", g.Ports, want)
	}
	if !reflect.DeepEqual(ok.Ports, []knock.Port{tcp(443), udp(53), tcp(22), tcp(443)}) {
		t.Errorf("normalize changed the caller's slice: %v", ok.Ports)
	}

	for name, mut := range map[string]func(*Grant){
		"empty id":      func(g *Grant) { g.ID = "" },
		"long id":       func(g *Grant) { g.ID = strings.Repeat("x", 33) },
		"id with dot":   func(g *Grant) { g.ID = "a.b" },
		"id with space": func(g *Grant) { g.ID = "a b" },
		"no source":     func(g *Grant) { g.Src = netip.Addr{} },
		"unspecified":   func(g *Grant) { g.Src = netip.IPv6Unspecified() },
		"multicast":     func(g *Grant) { g.Src = netip.MustParseAddr("224.0.0.1") },
		"no ports":      func(g *Grant) { g.Ports = nil },
		"port zero":     func(g *Grant) { g.Ports = []knock.Port{tcp(0)} },
		"icmp":          func(g *Grant) { g.Ports = []knock.Port{{Num: 1, Proto: 1}} },
		"no deadline":   func(g *Grant) { g.Deadline = time.Time{} },
	} {
		bad := ok
		bad.Ports = append([]knock.Port(nil), ok.Ports...)
		mut(&bad)
		if _, err := normalize(bad); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("%s: err = %v, want ErrInvalidGrant", name, err)
		}
	}
}

func TestSameDeadline(t *testing.T) {
	base := time.Unix(1000, 0)
	for _, tc := range []struct {
		a, b time.Time
		want bool
	}{
		{base, base, true},
		{base.Add(time.Millisecond), base.Add(999 * time.Millisecond), true}, // both round up to 1001
		{base, base.Add(time.Millisecond), false},
		{base.Add(999 * time.Millisecond), time.Unix(1001, 0), true},
	} {
		if got := SameDeadline(tc.a, tc.b); got != tc.want {
			t.Errorf("SameDeadline(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}
