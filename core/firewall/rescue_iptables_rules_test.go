package firewall

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// mustRescueSpec is the normalized spec for ports (a port list as the
// config writes it), from, and a 3s heartbeat.
func mustRescueSpec(t *testing.T, ports string, from ...string) rescueSpec {
	t.Helper()
	ps, err := knock.ParsePortList(ports)
	if err != nil {
		t.Fatal(err)
	}
	rs := RescueSpec{Ports: ps, After: 3 * time.Second}
	for _, f := range from {
		rs.From = append(rs.From, netip.MustParsePrefix(f))
	}
	s, err := newRescueSpec(rs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIPRescueRules(t *testing.T) {
	many := make([]string, 17)
	for i := range many {
		many[i] = strconv.Itoa(1000+i) + "/tcp"
	}
	for _, tc := range []struct {
		name  string
		spec  rescueSpec
		v6    bool
		wantV []string // each rule joined by spaces
	}{
		{"anyone", mustRescueSpec(t, "22/tcp,53/udp"), false, []string{
			"-p tcp -m multiport --dports 22 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:tcp:22:from:any -j ACCEPT",
			"-p udp -m multiport --dports 53 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:udp:53:from:any -j ACCEPT",
		}},
		{"from v4 only, v4 family", mustRescueSpec(t, "22/tcp,2222/tcp", "10.0.0.0/8", "192.0.2.0/24"), false, []string{
			"-s 10.0.0.0/8 -p tcp -m multiport --dports 22,2222 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:tcp:22,2222:from:10.0.0.0/8 -j ACCEPT",
			"-s 192.0.2.0/24 -p tcp -m multiport --dports 22,2222 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:tcp:22,2222:from:192.0.2.0/24 -j ACCEPT",
		}},
		{"from v4 only, v6 family: closed", mustRescueSpec(t, "22/tcp", "10.0.0.0/8"), true, nil},
		{"more than 15 ports split", mustRescueSpec(t, strings.Join(many, ",")), false, []string{
			"-p tcp -m multiport --dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:tcp:1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014:from:any -j ACCEPT",
			"-p tcp -m multiport --dports 1015,1016 -m set ! --match-set sesame-rescue dst -m comment --comment sesame-rescue:tcp:1015,1016:from:any -j ACCEPT",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range ipRescueRules(tc.spec, tc.v6) {
				got = append(got, strings.Join(r.spec, " "))
				if !strings.Contains(strings.Join(r.spec, " "), "--comment "+r.tag+" ") {
					t.Errorf("rule %q does not carry its tag %q", r.spec, r.tag)
				}
				if len(r.tag) > 255 {
					t.Errorf("tag longer than xt_comment allows: %d", len(r.tag))
				}
			}
			if !slices.Equal(got, tc.wantV) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.wantV, "\n  "))
			}
		})
	}
}

// TestRuleTagsRoundTrip feeds the rules as `iptables -S` prints them
// (source first, comment quoted) back through ruleTags.
func TestRuleTagsRoundTrip(t *testing.T) {
	lines := []string{
		"-N SESAME-RESCUE",
		`-A SESAME-RESCUE -s 10.0.0.0/8 -p tcp -m multiport --dports 22,2222 -m set ! --match-set sesame-rescue dst -m comment --comment "sesame-rescue:tcp:22,2222:from:10.0.0.0/8" -j ACCEPT`,
		`-A SESAME-RESCUE -p tcp -m tcp --dport 80 -m comment --comment "someone else's \"rule\"" -j ACCEPT`,
	}
	got, err := ipRescueTags(lines)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sesame-rescue:tcp:22,2222:from:10.0.0.0/8", ""}
	if !slices.Equal(got, want) {
		t.Errorf("tags %q, want %q", got, want)
	}
	if _, err := ipRescueTags([]string{`-A X --comment "open`}); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestJumpPlace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lines     []string
		wantMine  []int
		wantBlock int
	}{
		{"empty", []string{"-P INPUT DROP"}, nil, 0},
		{"grants first, then ours", []string{"-P INPUT DROP", "-A INPUT -j SESAME", "-A INPUT -j SESAME-RESCUE", "-A INPUT -i lo -j ACCEPT"}, []int{2}, 2},
		{"ours first", []string{"-A INPUT -j SESAME-RESCUE", "-A INPUT -j SESAME", "-A INPUT -j DROP"}, []int{1}, 2},
		{"pushed down by fail2ban", []string{"-A INPUT -j f2b-sshd", "-A INPUT -j SESAME", "-A INPUT -j SESAME-RESCUE"}, []int{3}, 0},
		{"duplicates", []string{"-A INPUT -j SESAME-RESCUE", "-A INPUT -j DROP", "-A INPUT -j SESAME-RESCUE"}, []int{1, 3}, 1},
		{"grants only", []string{"-A INPUT -j SESAME", "-A INPUT -j DROP"}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mine, block := jumpPlace(tc.lines, ipRescueChain)
			if !slices.Equal(mine, tc.wantMine) || block != tc.wantBlock {
				t.Errorf("jumpPlace = %v, %d; want %v, %d", mine, block, tc.wantMine, tc.wantBlock)
			}
		})
	}
}

func TestParseIpsetSave(t *testing.T) {
	out := "create sesame-rescue bitmap:port range 0-2222 timeout 3\nadd sesame-rescue 0 timeout 0\nadd sesame-rescue 22 timeout 2\nadd sesame-rescue 2222 timeout 0\n"
	d, err := parseIpsetSave(out, ipsetName)
	if err != nil {
		t.Fatal(err)
	}
	if d.Header != (ipsetHeader{Type: "bitmap:port", From: 0, To: 2222, HasTimeout: true}) {
		t.Errorf("header %+v", d.Header)
	}
	if len(d.Elements) != 3 || d.Elements[22] != 2 || d.Elements[0] != 0 || d.Elements[2222] != 0 {
		t.Errorf("elements %v", d.Elements)
	}
	for _, tc := range []struct {
		spec rescueSpec
		fits bool
	}{
		{mustRescueSpec(t, "22/tcp,2222/tcp"), true},
		{mustRescueSpec(t, "2223/tcp"), false},
	} {
		if got := d.Header.fits(tc.spec); got != tc.fits {
			t.Errorf("fits(%v) = %t", tc.spec.ports, got)
		}
	}
	held, left := aliveFromDump(d, mustRescueSpec(t, "22/tcp,2222/tcp").ports)
	if !held || left != time.Second/2 {
		t.Errorf("held %t left %s; want held, 500ms (2222 has under a second)", held, left)
	}
	if _, left := aliveFromDump(d, mustRescueSpec(t, "22/tcp,80/tcp").ports); left != 0 {
		t.Errorf("a missing port's heartbeat counts as present: left %s", left)
	}
	if _, err := parseIpsetSave("ipset v7.17: The set with the given name does not exist", ipsetName); err == nil {
		t.Error("no create line accepted")
	}
	if _, err := parseIpsetSave("create sesame-rescue bitmap:port range 0-x timeout 3", ipsetName); err == nil {
		t.Error("bad range accepted")
	}
}
