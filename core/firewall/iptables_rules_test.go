package firewall

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestRuleSpec(t *testing.T) {
	e4 := ent(src4, knock.TCP, "22,443", claim{"a", 1764280950}, claim{"b", 1764280900})
	want4 := []string{"-s", "192.0.2.7/32", "-p", "tcp", "-m", "multiport", "--dports", "22,443",
		"-m", "time", "--datestop", "2025-11-27T22:02:29",
		"-m", "comment", "--comment", "sesame id=a until=1764280950 id=b until=1764280900", "-j", "ACCEPT"}
	if got := ruleSpec(e4, true); !reflect.DeepEqual(got, want4) {
		t.Errorf("v4:\n got %q\nwant %q", got, want4)
	}
	e6 := ent(src6, knock.UDP, "53", claim{"a", 1764280950})
	want6 := []string{"-s", "2001:db8::7/128", "-p", "udp", "-m", "multiport", "--dports", "53",
		"-m", "comment", "--comment", "sesame id=a until=1764280950", "-j", "ACCEPT"}
	if got := ruleSpec(e6, false); !reflect.DeepEqual(got, want6) {
		t.Errorf("v6:\n got %q\nwant %q", got, want6)
	}
}

func TestDateStop(t *testing.T) {
	// The rule matches while the Unix second is <= datestop, so datestop is
	// the second before until.
	if got := dateStop([]claim{{"a", 100}, {"b", 61}}); got != "1970-01-01T00:01:39" {
		t.Errorf("got %s", got)
	}
	if got := dateStop([]claim{{"a", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()}}); got != "2038-01-19T03:14:07" {
		t.Errorf("beyond 2038 not clamped: %s", got)
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		ok   bool
		want entry
	}{
		{
			name: "legacy output",
			line: `-A SESAME -s 10.77.0.2/32 -p tcp -m multiport --dports 22,443 -m time --datestop 2030-01-01T00:00:00 -m comment --comment "sesame id=a until=1893456000" -j ACCEPT`,
			ok:   true,
			want: entry{entryKey: entryKey{netip.MustParseAddr("10.77.0.2"), knock.TCP, "22,443"}, Claims: []claim{{"a", 1893456000}}},
		},
		{
			name: "ipv6, no time match, comment first",
			line: `-A SESAME -s fd77::2/128 -m comment --comment "sesame id=x-1 until=5 id=y until=6" -p udp -m multiport --dports 53 -j ACCEPT`,
			ok:   true,
			want: entry{entryKey: entryKey{netip.MustParseAddr("fd77::2"), knock.UDP, "53"}, Claims: []claim{{"x-1", 5}, {"y", 6}}},
		},
		{name: "chain line", line: "-N SESAME"},
		{name: "other chain", line: `-A INPUT -s 10.0.0.1/32 -m comment --comment "sesame id=a until=1" -j ACCEPT`},
		{name: "foreign rule in our chain", line: `-A SESAME -s 10.0.0.0/8 -j ACCEPT`},
		{name: "our comment, other target", line: `-A SESAME -s 10.0.0.1/32 -p tcp -m multiport --dports 22 -m comment --comment "sesame id=a until=1" -j DROP`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok, err := parseRule(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			if e.entryKey != tc.want.entryKey || !reflect.DeepEqual(e.Claims, tc.want.Claims) {
				t.Fatalf("got %+v, want %+v", e, tc.want)
			}
			args, _ := splitRuleArgs(tc.line)
			if !reflect.DeepEqual(e.handle, args[2:]) {
				t.Fatalf("handle %q, want the listed rulespec", e.handle)
			}
		})
	}
	if _, _, err := parseRule(`-A SESAME -s 10.0.0.0/8 -p tcp -m multiport --dports 22 -m comment --comment "sesame id=a until=1" -j ACCEPT`); err == nil {
		t.Error("a Sesame rule for a whole network should be an error")
	}
}

func TestRuleSpecParsesBack(t *testing.T) {
	for _, e := range []entry{
		ent(src4, knock.TCP, "22", claim{"a", 1764280950}),
		ent(src6, knock.UDP, "53,54,1000", claim{"a", 1}, claim{"b", 2}),
	} {
		// iptables -S prints the spec back with the comment quoted.
		spec := ruleSpec(e, true)
		for i, a := range spec {
			if strings.Contains(a, " ") {
				spec[i] = `"` + a + `"`
			}
		}
		got, ok, err := parseRule("-A SESAME " + strings.Join(spec, " "))
		if err != nil || !ok || got.entryKey != e.entryKey || !reflect.DeepEqual(got.Claims, e.Claims) {
			t.Errorf("round trip of %v: %+v %v %v", e, got, ok, err)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{`-A X -j ACCEPT`, []string{"-A", "X", "-j", "ACCEPT"}, false},
		{`--comment "a b"  -j  X`, []string{"--comment", "a b", "-j", "X"}, false},
		{`--comment "say \"hi\" \\ ok"`, []string{"--comment", `say "hi" \ ok`}, false},
		{`--comment ""`, []string{"--comment", ""}, false},
		{`--comment "open`, nil, true},
	} {
		got, err := splitRuleArgs(tc.in)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("splitRuleArgs(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestIsJump(t *testing.T) {
	for line, want := range map[string]bool{
		"-A INPUT -j SESAME":        true,
		"-A INPUT -j SESAME ":       true,
		"-A INPUT -i lo -j SESAME":  false,
		"-A INPUT -j SESAME2":       false,
		"-A FORWARD -j SESAME":      false,
		"-A INPUT -p tcp -j ACCEPT": false,
	} {
		if got := isJump(line); got != want {
			t.Errorf("isJump(%q) = %v", line, got)
		}
	}
}
