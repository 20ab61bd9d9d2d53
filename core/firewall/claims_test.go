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

func TestCommentRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims []claim
		text   string
	}{
		{"one", []claim{{"ssh-1", 1764280950}}, "sesame id=ssh-1 until=1764280950"},
		{"two", []claim{{"a", 1}, {"b_2", 2}}, "sesame id=a until=1 id=b_2 until=2"},
		{"longest id", []claim{{strings.Repeat("Z", 32), 4102444800}}, "sesame id=" + strings.Repeat("Z", 32) + " until=4102444800"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := formatComment(tc.claims)
			if got != tc.text {
				t.Fatalf("formatComment = %q, want %q", got, tc.text)
			}
			back, ok := parseComment(got)
			if !ok || !reflect.DeepEqual(back, tc.claims) {
				t.Fatalf("parseComment(%q) = %v, %v; want %v", got, back, ok, tc.claims)
			}
		})
	}
}

func TestParseCommentRejectsForeign(t *testing.T) {
	for _, s := range []string{
		"",
		"sesame",
		"admin: allow office",
		"sesame id=a",
		"sesame id=a until=",
		"sesame id=a until=-5",
		"sesame id=a until=12x",
		"sesame until=1 id=a",
		"sesame id=bad/id until=1",
		"sesame id=" + strings.Repeat("a", 33) + " until=1",
		"SESAME id=a until=1",
	} {
		if cs, ok := parseComment(s); ok {
			t.Errorf("parseComment(%q) = %v, accepted", s, cs)
		}
	}
	// Duplicate IDs (never written, but tolerated): the later until wins.
	cs, ok := parseComment("sesame id=a until=5 id=a until=9 id=a until=7")
	if !ok || !reflect.DeepEqual(cs, []claim{{"a", 9}}) {
		t.Errorf("duplicates: got %v, %v", cs, ok)
	}
}

var (
	src4 = netip.MustParseAddr("192.0.2.7")
	src6 = netip.MustParseAddr("2001:db8::7")
	t0   = time.Unix(1_764_000_000, 0)
)

func tcp(n uint16) knock.Port { return knock.Port{Num: n, Proto: knock.TCP} }
func udp(n uint16) knock.Port { return knock.Port{Num: n, Proto: knock.UDP} }

func mkGrant(id string, src netip.Addr, dl time.Time, ports ...knock.Port) Grant {
	g, err := normalize(Grant{ID: id, Src: src, Ports: ports, Deadline: dl})
	if err != nil {
		panic(err)
	}
	return g
}

func ent(src netip.Addr, p knock.Proto, ports string, cs ...claim) entry {
	return entry{entryKey: entryKey{Src: src, Proto: p, Ports: ports}, Claims: cs}
}

// render prints a plan compactly for comparison.
func render(plan []change) []string {
	out := make([]string, len(plan))
	for i, c := range plan {
		out[i] = c.String()
	}
	return out
}

// applyPlan simulates a backend applying plan to es.
func applyPlan(es []entry, plan []change) []entry {
	out := append([]entry(nil), es...)
	for _, c := range plan {
		if c.New != nil {
			out = append(out, *c.New)
		}
		if c.Old != nil {
			for i := range out {
				if out[i].entryKey == c.Old.entryKey && reflect.DeepEqual(out[i].Claims, c.Old.Claims) {
					out = append(out[:i], out[i+1:]...)
					break
				}
			}
		}
	}
	return out
}

func TestPlanGrant(t *testing.T) {
	dl := t0.Add(30 * time.Second)
	u := untilSecs(dl)
	for _, tc := range []struct {
		name     string
		existing []entry
		g        Grant
		split    splitFunc
		want     []string
		err      error
	}{
		{
			name:  "new grant, one entry per port",
			g:     mkGrant("a", src4, dl, tcp(443), tcp(22)),
			split: splitPerPort,
			want: []string{
				"add 192.0.2.7 tcp/22 [sesame id=a until=1764000030]",
				"add 192.0.2.7 tcp/443 [sesame id=a until=1764000030]",
			},
		},
		{
			name:  "new grant, one entry per protocol",
			g:     mkGrant("a", src6, dl, tcp(443), udp(53), tcp(22)),
			split: splitPerProto(15),
			want: []string{
				"add 2001:db8::7 tcp/22,443 [sesame id=a until=1764000030]",
				"add 2001:db8::7 udp/53 [sesame id=a until=1764000030]",
			},
		},
		{
			name:     "same grant again: nothing to do",
			existing: []entry{ent(src4, knock.TCP, "22", claim{"a", u})},
			g:        mkGrant("a", src4, dl, tcp(22)),
			split:    splitPerPort,
			want:     []string{},
		},
		{
			name:     "extend: replace in place",
			existing: []entry{ent(src4, knock.TCP, "22", claim{"a", u})},
			g:        mkGrant("a", src4, dl.Add(time.Minute), tcp(22)),
			split:    splitPerPort,
			want:     []string{"replace 192.0.2.7 tcp/22 [sesame id=a until=1764000030] by [sesame id=a until=1764000090]"},
		},
		{
			name:     "shorten is honoured too",
			existing: []entry{ent(src4, knock.TCP, "22", claim{"a", u + 100})},
			g:        mkGrant("a", src4, dl, tcp(22)),
			split:    splitPerPort,
			want:     []string{"replace 192.0.2.7 tcp/22 [sesame id=a until=1764000130] by [sesame id=a until=1764000030]"},
		},
		{
			name:     "other grant, same source and ports: share the entry",
			existing: []entry{ent(src4, knock.TCP, "22,443", claim{"a", u})},
			g:        mkGrant("b", src4, dl.Add(time.Minute), tcp(22), tcp(443)),
			split:    splitPerProto(15),
			want:     []string{"replace 192.0.2.7 tcp/22,443 [sesame id=a until=1764000030] by [sesame id=a until=1764000030 id=b until=1764000090]"},
		},
		{
			name:     "ports changed: add new entry first, then drop the old claim",
			existing: []entry{ent(src4, knock.TCP, "22", claim{"a", u}), ent(src4, knock.TCP, "80", claim{"a", u}, claim{"z", u})},
			g:        mkGrant("a", src4, dl, tcp(443)),
			split:    splitPerPort,
			want: []string{
				"add 192.0.2.7 tcp/443 [sesame id=a until=1764000030]",
				"replace 192.0.2.7 tcp/80 [sesame id=a until=1764000030 id=z until=1764000030] by [sesame id=z until=1764000030]",
				"delete 192.0.2.7 tcp/22 [sesame id=a until=1764000030]",
			},
		},
		{
			name: "duplicates from a crash are merged into the first",
			existing: []entry{
				ent(src4, knock.TCP, "22", claim{"a", u}),
				ent(src4, knock.TCP, "22", claim{"a", u + 5}, claim{"b", u}),
			},
			g:     mkGrant("a", src4, dl.Add(time.Minute), tcp(22)),
			split: splitPerPort,
			want: []string{
				"replace 192.0.2.7 tcp/22 [sesame id=a until=1764000030] by [sesame id=a until=1764000090 id=b until=1764000030]",
				"delete 192.0.2.7 tcp/22 [sesame id=a until=1764000035 id=b until=1764000030]",
			},
		},
		{
			name: "other sources are not touched",
			existing: []entry{
				ent(src6, knock.TCP, "22", claim{"a", u}),
				ent(netip.MustParseAddr("192.0.2.8"), knock.TCP, "22", claim{"b", u}),
			},
			g:     mkGrant("c", src4, dl, tcp(22)),
			split: splitPerPort,
			want:  []string{"add 192.0.2.7 tcp/22 [sesame id=c until=1764000030]"},
		},
		{
			name: "too many grants for one comment",
			existing: []entry{ent(src4, knock.TCP, "22",
				claim{strings.Repeat("a", 32), u}, claim{strings.Repeat("b", 32), u},
				claim{strings.Repeat("c", 32), u}, claim{strings.Repeat("d", 32), u})},
			g:     mkGrant(strings.Repeat("e", 32), src4, dl, tcp(22)),
			split: splitPerPort,
			err:   ErrTooManyClaims,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := planGrant(tc.existing, tc.g, tc.split, t0)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := render(plan); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			// Applying the plan must leave exactly g's ports with g's claim,
			// once each, and the plan must be idempotent.
			after := applyPlan(tc.existing, plan)
			again, err := planGrant(after, tc.g, tc.split, t0)
			if err != nil || len(again) != 0 {
				t.Fatalf("second plan not empty: %v %v", render(again), err)
			}
			var mine []Grant
			for _, g := range grantsFromEntries(after) {
				if g.ID == tc.g.ID {
					mine = append(mine, g)
				}
			}
			if len(mine) != 1 || !sameGrant(mine[0], tc.g) {
				t.Fatalf("after applying: %v, want %v", mine, tc.g)
			}
		})
	}
}

func TestPlanGrantExpiryIsExact(t *testing.T) {
	dl := t0.Add(1500 * time.Millisecond)
	plan, err := planGrant([]entry{ent(src4, knock.TCP, "22", claim{"other", untilSecs(t0.Add(time.Second))})},
		mkGrant("a", src4, dl, tcp(22)), splitPerPort, t0)
	if err != nil || len(plan) != 1 {
		t.Fatalf("plan %v err %v", render(plan), err)
	}
	if got := plan[0].New.Expiry; !got.Equal(dl) {
		t.Fatalf("expiry %v, want the exact deadline %v", got, dl)
	}
	if got := plan[0].New.Claims; got[0].Until != untilSecs(dl) || got[0].Until != t0.Unix()+2 {
		t.Fatalf("claim until %d, want deadline rounded up to %d", got[0].Until, t0.Unix()+2)
	}
}

func TestPlanRevoke(t *testing.T) {
	u := t0.Unix() + 60
	for _, tc := range []struct {
		name     string
		existing []entry
		id       string
		want     []string
	}{
		{"absent: nothing", []entry{ent(src4, knock.TCP, "22", claim{"b", u})}, "a", []string{}},
		{"sole claim: delete", []entry{ent(src4, knock.TCP, "22", claim{"a", u})}, "a",
			[]string{"delete 192.0.2.7 tcp/22 [sesame id=a until=1764000060]"}},
		{"shared: rewrite for the other", []entry{ent(src4, knock.TCP, "22", claim{"a", u}, claim{"b", u + 1})}, "a",
			[]string{"replace 192.0.2.7 tcp/22 [sesame id=a until=1764000060 id=b until=1764000061] by [sesame id=b until=1764000061]"}},
		{"shared with an expired claim: delete", []entry{ent(src4, knock.TCP, "22", claim{"a", u}, claim{"b", t0.Unix()})}, "a",
			[]string{"delete 192.0.2.7 tcp/22 [sesame id=a until=1764000060 id=b until=1764000000]"}},
		{"every entry of the id", []entry{
			ent(src4, knock.TCP, "22", claim{"a", u}),
			ent(src6, knock.UDP, "53", claim{"a", u}),
			ent(src6, knock.UDP, "54", claim{"c", u}),
		}, "a", []string{
			"delete 192.0.2.7 tcp/22 [sesame id=a until=1764000060]",
			"delete 2001:db8::7 udp/53 [sesame id=a until=1764000060]",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := planRevoke(tc.existing, tc.id, t0)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(plan); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, g := range grantsFromEntries(applyPlan(tc.existing, plan)) {
				if g.ID == tc.id {
					t.Fatalf("%s still listed after revoke: %v", tc.id, g)
				}
			}
		})
	}
}

func TestSplitPerProtoChunks(t *testing.T) {
	var ports []knock.Port
	for n := uint16(1); n <= 20; n++ {
		ports = append(ports, tcp(n))
	}
	ports = append(ports, udp(7))
	keys := splitPerProto(15)(mkGrant("a", src4, t0, ports...))
	var got []string
	for _, k := range keys {
		got = append(got, k.Proto.String()+"/"+k.Ports)
	}
	want := []string{"tcp/1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "tcp/16,17,18,19,20", "udp/7"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestGrantsFromEntries(t *testing.T) {
	es := []entry{
		ent(src4, knock.TCP, "22,443", claim{"a", 100}, claim{"b", 200}),
		ent(src4, knock.UDP, "53", claim{"a", 90}), // stale: earliest deadline is reported
		ent(src6, knock.TCP, "22", claim{"a", 100}),
	}
	got := grantsFromEntries(es)
	want := []Grant{
		{ID: "a", Src: src4, Ports: []knock.Port{tcp(22), tcp(443), udp(53)}, Deadline: time.Unix(90, 0)},
		{ID: "a", Src: src6, Ports: []knock.Port{tcp(22)}, Deadline: time.Unix(100, 0)},
		{ID: "b", Src: src4, Ports: []knock.Port{tcp(22), tcp(443)}, Deadline: time.Unix(200, 0)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
