package firewall

import (
	"slices"
	"strings"
	"testing"
)

// What iptables and ipset print is read back without trusting it: no input
// makes the readers panic, and what they accept is consistent.

func FuzzSplitRuleArgs(f *testing.F) {
	f.Add(`-A SESAME -s 203.0.113.7/32 -p tcp -m multiport --dports 22,443 -m comment --comment "sesame id=a until=1" -j ACCEPT`)
	f.Add(`-A SESAME-RESCUE -m comment --comment "someone else's \"rule\"" -j ACCEPT`)
	f.Add(`-A X --comment "open`)
	f.Fuzz(func(t *testing.T, line string) {
		args, err := splitRuleArgs(line)
		if err != nil {
			return
		}
		// Quoting every word the way iptables does reads back the same.
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		back, err := splitRuleArgs(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(back, args) {
			t.Fatalf("%q: args %q, quoted back %q (%v)", line, args, back, err)
		}
		if _, err := ipRescueTags([]string{line}); err != nil {
			t.Fatalf("ipRescueTags refused a line splitRuleArgs accepted: %v", err)
		}
		parseRule(line)
	})
}

func FuzzParseIpsetSave(f *testing.F) {
	f.Add("create sesame-rescue bitmap:port range 0-2222 timeout 3\nadd sesame-rescue 0 timeout 0\nadd sesame-rescue 22 timeout 2\n")
	f.Add("create sesame-rescue bitmap:port range 0-x timeout 3")
	f.Add("ipset v7.17: The set with the given name does not exist")
	f.Fuzz(func(t *testing.T, out string) {
		d, err := parseIpsetSave(out, ipsetName)
		if err != nil {
			return
		}
		for port, left := range d.Elements {
			if left < -1 {
				t.Fatalf("port %d: %d seconds left", port, left)
			}
		}
		held, left := aliveFromDump(d, mustRescueSpec(t, "22/tcp,2222/tcp").ports)
		if left < 0 || (held && d.Elements[0] > 0) {
			t.Fatalf("held %t left %s from %v", held, left, d.Elements)
		}
	})
}
