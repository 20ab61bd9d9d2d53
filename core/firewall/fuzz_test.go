package firewall

import (
	"errors"
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

// What the iptables backend reads back into its view: no listing makes
// parseTable panic, and what it keeps is Sesame's and deletable by the
// rulespec it keeps.
func FuzzParseTable(f *testing.F) {
	f.Add("-P INPUT DROP\n-N SESAME\n-A INPUT -j SESAME\n" +
		`-A SESAME -s 203.0.113.7/32 -p tcp -m multiport --dports 22,443 -m time --datestop 2030-01-01T00:00:00 -m comment --comment "sesame id=a until=1" -j ACCEPT` + "\n")
	f.Add("-N SESAME\n-A INPUT -j SESAME\n-A INPUT -i lo -j ACCEPT\n-A INPUT -j SESAME\r\n-A SESAME -s 10.0.0.0/8 -j ACCEPT\n")
	f.Add(`-A SESAME -s fd77::2/128 -m comment --comment "sesame id=x until=5" -p udp -m multiport --dports 53 -j ACCEPT`)
	f.Fuzz(func(t *testing.T, out string) {
		st := parseTable(out, nil)
		for i, p := range st.jumps {
			if p < 1 || (i > 0 && p <= st.jumps[i-1]) {
				t.Fatalf("jump positions %v", st.jumps)
			}
		}
		for _, e := range st.entries {
			if len(e.Claims) == 0 || !e.Src.IsValid() {
				t.Fatalf("entry %+v", e)
			}
			args, ok := e.handle.([]string)
			if !ok {
				t.Fatalf("entry without its rulespec: %+v", e)
			}
			// The rulespec goes into a restore script, or is refused there.
			if _, err := restoreScript([]xtCmd{append(xtCmd{"-D", ipChain}, args...)}); err != nil && !errors.Is(err, errUnquotable) {
				t.Fatal(err)
			}
		}
		cmds, pos := baseRepair(st)
		if pos < 1 || (st.chain && len(st.jumps) == 1 && (len(cmds) != 0 || pos != st.jumps[0])) {
			t.Fatalf("repair of %+v: %q, jump at %d", st, cmds, pos)
		}
	})
}

// An argument quoted for iptables-restore reads back as itself.
func FuzzQuoteRestoreArg(f *testing.F) {
	for _, s := range []string{"sesame id=a until=1", `say "hi" \ now`, "", "-A", "#", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		q, err := quoteRestoreArg(a)
		if err != nil {
			if !strings.ContainsAny(a, "\n\r\x00") {
				t.Fatalf("%q refused: %v", a, err)
			}
			return
		}
		back, err := splitRuleArgs(q)
		if err != nil || len(back) != 1 || back[0] != a {
			t.Fatalf("%q quoted %s reads back as %q (%v)", a, q, back, err)
		}
	})
}

// No kernel answer makes parseGenReply panic or read past the message.
func FuzzParseGenReply(f *testing.F) {
	f.Add(genReply(1, 0, nla(nftaGenID, []byte{0, 0, 0, 7}), nla(3, []byte("iptables\x00"))))
	f.Add(genReply(1, -1, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := parseGenReply(b, 1)
		if err == nil && len(b) < nlmsgHdrLen+nfgenMsgLen+nlaHdrLen+4 {
			t.Fatalf("generation %d from %d bytes", g, len(b))
		}
	})
}
