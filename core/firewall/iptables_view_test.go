package firewall

import (
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// listed is e as `iptables -S` shows it, with the handle a listing gives.
func listed(t *testing.T, e entry) entry {
	t.Helper()
	line := "-A " + ipChain + " " + quotedArgs(t, ruleSpec(e, true))
	got, ok, err := parseRule(line)
	if err != nil || !ok {
		t.Fatalf("parseRule(%q): %v %v", line, ok, err)
	}
	return got
}

func quotedArgs(t *testing.T, args []string) string {
	t.Helper()
	q := make([]string, len(args))
	for i, a := range args {
		var err error
		if q[i], err = quoteRestoreArg(a); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Join(q, " ")
}

func TestParseTable(t *testing.T) {
	rule := `-A SESAME -s 192.0.2.7/32 -p tcp -m multiport --dports 22 -m time --datestop 2025-11-27T22:02:29 -m comment --comment "sesame id=a until=1764280950" -j ACCEPT`
	out := strings.Join([]string{
		"-P INPUT DROP",
		"-P FORWARD ACCEPT",
		"-N SESAME",
		"-N SESAME-RESCUE",
		"-N f2b-sshd",
		"-A INPUT -p tcp --dport 22 -j f2b-sshd",
		"-A INPUT -j SESAME",
		"-A INPUT -j SESAME-RESCUE",
		"-A INPUT -i lo -j ACCEPT",
		"-A INPUT -j SESAME",
		rule,
		`-A SESAME -s 10.0.0.0/8 -j ACCEPT`,
		`-A SESAME -s 10.0.0.0/8 -p tcp -m multiport --dports 22 -m comment --comment "sesame id=b until=1" -j ACCEPT`,
		`-A SESAME-RESCUE -p tcp -m multiport --dports 22 -j ACCEPT`,
		`-A f2b-sshd -j RETURN`,
		"",
	}, "\n")
	var bad []string
	st := parseTable(out, func(line string, err error) { bad = append(bad, line) })
	if !st.chain || !slices.Equal(st.jumps, []int{2, 5}) || len(st.entries) != 1 {
		t.Fatalf("chain %v jumps %v entries %+v", st.chain, st.jumps, st.entries)
	}
	if e := st.entries[0]; e.Src != src4 || e.Ports != "22" || !reflect.DeepEqual(e.Claims, []claim{{"a", 1764280950}}) {
		t.Fatalf("entry %+v", e)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "10.0.0.0/8") || !strings.Contains(bad[0], "sesame") {
		t.Fatalf("unreadable Sesame rules reported: %q", bad)
	}
	if !st.baseOK() {
		t.Fatal("baseOK false with a chain and jumps")
	}
	if st := parseTable("-P INPUT DROP\n-A INPUT -j SESAME\n", nil); st.chain || st.baseOK() {
		t.Fatalf("no -N line: %+v", st)
	}
	if st := parseTable("-N SESAME\n-A INPUT -i lo -j SESAME\n", nil); len(st.jumps) != 0 || st.baseOK() {
		t.Fatalf("a conditional jump is not Sesame's: %+v", st)
	}
}

func TestBaseRepair(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   chainState
		want []string
		pos  int
	}{
		{"whole", chainState{chain: true, jumps: []int{1}}, nil, 1},
		{"whole, jump pushed down", chainState{chain: true, jumps: []int{3}}, nil, 3},
		{"no chain, no jump", chainState{}, []string{"-N SESAME", "-I INPUT 1 -j SESAME"}, 1},
		{"jump lost", chainState{chain: true}, []string{"-I INPUT 1 -j SESAME"}, 1},
		{"chain lost, jump kept", chainState{jumps: []int{1}}, []string{"-N SESAME"}, 1},
		{"three jumps", chainState{chain: true, jumps: []int{1, 4, 7}}, []string{"-D INPUT -j SESAME", "-D INPUT -j SESAME"}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmds, pos := baseRepair(tc.st)
			var got []string
			for _, c := range cmds {
				got = append(got, strings.Join(c, " "))
			}
			if !slices.Equal(got, tc.want) || pos != tc.pos {
				t.Fatalf("got %q at %d, want %q at %d", got, pos, tc.want, tc.pos)
			}
		})
	}
}

// entryText is entries without their handles, sorted, for comparing views.
func entryText(es []entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.entryKey.String()+" ["+e.comment()+"]")
	}
	slices.Sort(out)
	return out
}

// cmdText renders commands for comparison, with the rulespec shortened to
// its claims.
func cmdText(cmds []xtCmd) []string {
	out := []string{}
	for _, c := range cmds {
		s := c[0] + " " + c[1]
		if i := slices.Index(c, "--comment"); i >= 0 {
			s += " [" + c[i+1] + "]"
		}
		out = append(out, s)
	}
	return out
}

func TestPlanCommands(t *testing.T) {
	dl := t0.Add(30 * time.Second)
	u := untilSecs(dl)
	a := listed(t, ent(src4, knock.TCP, "22", claim{"a", u}))
	other := listed(t, ent(src6, knock.TCP, "22", claim{"z", u}))
	for _, tc := range []struct {
		name   string
		view   []entry
		g      Grant
		revoke string
		want   []string
		next   []string
	}{
		{
			name: "new grant: one append",
			view: []entry{other},
			g:    mkGrant("a", src4, dl, tcp(22)),
			want: []string{"-A SESAME [sesame id=a until=1764000030]"},
			next: []string{"192.0.2.7 tcp/22 [sesame id=a until=1764000030]", "2001:db8::7 tcp/22 [sesame id=z until=1764000030]"},
		},
		{
			name: "extension: append the new rule, delete the listed one",
			view: []entry{a, other},
			g:    mkGrant("a", src4, dl.Add(time.Minute), tcp(22)),
			want: []string{"-A SESAME [sesame id=a until=1764000090]", "-D SESAME [sesame id=a until=1764000030]"},
			next: []string{"192.0.2.7 tcp/22 [sesame id=a until=1764000090]", "2001:db8::7 tcp/22 [sesame id=z until=1764000030]"},
		},
		{
			name: "same deadline again: nothing",
			view: []entry{a},
			g:    mkGrant("a", src4, dl, tcp(22)),
			want: []string{},
			next: []string{"192.0.2.7 tcp/22 [sesame id=a until=1764000030]"},
		},
		{
			name: "identical duplicate: the first is kept as it is, the second deleted",
			view: []entry{a, a},
			g:    mkGrant("a", src4, dl, tcp(22)),
			want: []string{"-D SESAME [sesame id=a until=1764000030]"},
			next: []string{"192.0.2.7 tcp/22 [sesame id=a until=1764000030]"},
		},
		{
			name:   "revoke of a shared rule: rewrite it for the other grant",
			view:   []entry{listed(t, ent(src4, knock.TCP, "22", claim{"a", u}, claim{"b", u + 9}))},
			revoke: "a",
			want:   []string{"-A SESAME [sesame id=b until=1764000039]", "-D SESAME [sesame id=a until=1764000030 id=b until=1764000039]"},
			next:   []string{"192.0.2.7 tcp/22 [sesame id=b until=1764000039]"},
		},
		{
			name:   "revoke: delete",
			view:   []entry{a, other},
			revoke: "a",
			want:   []string{"-D SESAME [sesame id=a until=1764000030]"},
			next:   []string{"2001:db8::7 tcp/22 [sesame id=z until=1764000030]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			view := slices.Clone(tc.view)
			var plan []change
			var err error
			if tc.revoke != "" {
				plan, err = planRevoke(view, tc.revoke, t0)
			} else {
				plan, err = planGrant(view, tc.g, splitPerProto(ipMaxPort), t0)
			}
			if err != nil {
				t.Fatal(err)
			}
			cmds, next := planCommands(view, plan, true)
			if got := cmdText(cmds); !slices.Equal(got, tc.want) {
				t.Fatalf("commands\n got %q\nwant %q", got, tc.want)
			}
			if got := entryText(next); !slices.Equal(got, tc.next) {
				t.Fatalf("next view\n got %q\nwant %q", got, tc.next)
			}
			// A delete names the rule as it was listed; an append as
			// ruleSpec writes it, and the next view keeps that as its handle.
			for _, c := range cmds {
				if c[0] == "-D" && !slices.ContainsFunc(tc.view, func(e entry) bool { return slices.Equal(e.handle.([]string), c[2:]) }) {
					t.Errorf("delete of a rule not in the view: %q", c)
				}
				if c[0] == "-A" && !slices.ContainsFunc(next, func(e entry) bool { return slices.Equal(e.handle.([]string), c[2:]) }) {
					t.Errorf("appended rule without its handle in the next view: %q", c)
				}
			}
			if !reflect.DeepEqual(view, tc.view) {
				t.Error("planCommands changed the view it was given")
			}
		})
	}
}

func TestRestoreScript(t *testing.T) {
	got, err := restoreScript([]xtCmd{
		{"-I", "INPUT", "1", "-j", "SESAME"},
		{"-A", "SESAME", "-s", "192.0.2.7/32", "-m", "comment", "--comment", "sesame id=a until=1", "-j", "ACCEPT"},
		{"-A", "SESAME", "-m", "comment", "--comment", `say "hi" \ now`, "-j", "ACCEPT"},
		{"-A", "SESAME", "-m", "comment", "--comment", "", "-j", "ACCEPT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "*filter\n" +
		"-I INPUT 1 -j SESAME\n" +
		`-A SESAME -s 192.0.2.7/32 -m comment --comment "sesame id=a until=1" -j ACCEPT` + "\n" +
		`-A SESAME -m comment --comment "say \"hi\" \\ now" -j ACCEPT` + "\n" +
		`-A SESAME -m comment --comment "" -j ACCEPT` + "\n" +
		"COMMIT\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Each line reads back as the command it came from.
	for i, l := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")[1:3] {
		args, err := splitRuleArgs(l)
		if err != nil || len(args) == 0 {
			t.Fatalf("line %d: %v", i, err)
		}
	}
	for _, bad := range []string{"two\nlines", "cr\r", "nul\x00"} {
		if _, err := restoreScript([]xtCmd{{"-A", "SESAME", "--comment", bad}}); !errors.Is(err, errUnquotable) {
			t.Errorf("%q: err %v, want errUnquotable", bad, err)
		}
	}
}

// genReply builds the kernel's NFT_MSG_NEWGEN answer (or an NLMSG_ERROR
// when errno is set) with the given attributes.
func genReply(seq uint32, errno int32, attrs ...[]byte) []byte {
	body := []byte{0, nfnetlinkVersion, 0, 0} // nfgenmsg
	typ := uint16(nfnlSubsysNFT<<8 | nftMsgNewGen)
	if errno != 0 {
		typ = nlmsgError
		body = binary.NativeEndian.AppendUint32(nil, uint32(errno)) // negative, as the kernel sends it
		body = append(body, make([]byte, 16)...)                    // the request's header
	}
	for _, a := range attrs {
		body = append(body, a...)
	}
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 4242) // port id
	return append(b, body...)
}

// nla is one netlink attribute, padded to 4 bytes.
func nla(typ uint16, payload []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(nlaHdrLen+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseGenReply(t *testing.T) {
	id := nla(nftaGenID, binary.BigEndian.AppendUint32(nil, 0xdeadbeef))
	pid := nla(2, binary.BigEndian.AppendUint32(nil, 77))
	name := nla(3, []byte("sesamed\x00"))
	for _, tc := range []struct {
		name string
		b    []byte
		want uint32
		err  string
	}{
		{"as the kernel sends it", genReply(1, 0, id, pid, name), 0xdeadbeef, ""},
		{"id last, odd-length attribute before it", genReply(1, 0, nla(3, []byte("x\x00")), id), 0xdeadbeef, ""},
		{"kernel error", genReply(1, -1, nil), 0, "operation not permitted"},
		{"other sequence", genReply(2, 0, id), 0, "sequence 2"},
		{"no id", genReply(1, 0, pid, name), 0, "no generation attribute"},
		{"short id", genReply(1, 0, nla(nftaGenID, []byte{1, 2})), 0, "generation of 2 bytes"},
		{"truncated", genReply(1, 0, id)[:22], 0, "length"},
		{"attribute longer than the message", genReply(1, 0, []byte{200, 0, 1, 0}), 0, "attribute length 200"},
		{"empty", nil, 0, "0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseGenReply(tc.b, 1)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %d, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %#x, %v; want %#x", got, err, tc.want)
			}
		})
	}
	if req := genRequest(9); len(req) != 20 || binary.NativeEndian.Uint16(req[4:]) != 0xa10 || binary.NativeEndian.Uint32(req[8:]) != 9 {
		t.Fatalf("request % x", req)
	}
}
