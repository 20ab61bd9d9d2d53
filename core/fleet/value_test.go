package fleet

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

const goodValue = `{"v":1,"id":"187a3f0c2b9d4e10a1b2c3d4e5f60718","door":"ssh","source":"203.0.113.7","ports":["22/tcp","53/udp"],"deadline":"2026-11-30T09:17:28.5Z","origin":"bastion-3","identity":"alice"}`

func TestParseGood(t *testing.T) {
	g, err := Parse([]byte(goodValue))
	if err != nil {
		t.Fatal(err)
	}
	want := Grant{
		ID: "187a3f0c2b9d4e10a1b2c3d4e5f60718", Door: "ssh", Source: netip.MustParseAddr("203.0.113.7"),
		Open:     []knock.Port{{Num: 22, Proto: knock.TCP}, {Num: 53, Proto: knock.UDP}},
		Deadline: time.Date(2026, 11, 30, 9, 17, 28, 500000000, time.UTC), Origin: "bastion-3", Identity: "alice",
	}
	if g.ID != want.ID || g.Door != want.Door || g.Source != want.Source || !g.Deadline.Equal(want.Deadline) ||
		g.Origin != want.Origin || g.Identity != want.Identity || knock.FormatSequence(g.Open) != knock.FormatSequence(want.Open) {
		t.Fatalf("got %+v\nwant %+v", g, want)
	}
	b, err := g.Marshal()
	if err != nil || string(b) != goodValue {
		t.Fatalf("Marshal: %v\n%s\nwant\n%s", err, b, goodValue)
	}
	// No identity, no ports (a door that only runs commands), IPv6.
	g2, err := Parse([]byte(`{"v":1,"id":"x","door":"web","source":"2001:db8::7","ports":[],"deadline":"2026-01-02T03:04:05+02:00","origin":"n"}`))
	if err != nil || g2.Identity != "" || len(g2.Open) != 0 || g2.Deadline.Location() != time.UTC || g2.Deadline.Hour() != 1 {
		t.Fatalf("got %+v, %v", g2, err)
	}
}

func TestParseRefuses(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(goodValue, old, new, 1) }
	cases := []struct{ name, value, reason string }{
		{"empty", ``, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"trailing", goodValue + `{}`, "data after"},
		{"truncated", goodValue[:len(goodValue)-1], "unterminated"},
		{"unknown member", repl(`"v":1,`, `"v":1,"x":2,`), `unknown member "x"`},
		{"duplicate", repl(`"door":"ssh",`, `"door":"ssh","door":"web",`), "given twice"},
		{"missing ports", repl(`"ports":["22/tcp","53/udp"],`, ``), `"ports" missing`},
		{"missing id", repl(`"id":"187a3f0c2b9d4e10a1b2c3d4e5f60718",`, ``), `"id" missing`},
		{"version 2", repl(`"v":1`, `"v":2`), "unsupported grant format version 2"},
		{"version string", repl(`"v":1`, `"v":"1"`), "not a non-negative integer"},
		{"version float", repl(`"v":1`, `"v":1.0`), "not a small integer"},
		{"null door", repl(`"door":"ssh"`, `"door":null`), "not a string"},
		{"empty door", repl(`"door":"ssh"`, `"door":""`), "empty door"},
		{"control in door", repl(`"door":"ssh"`, `"door":"ss\nh"`), "control character"},
		{"bad id", repl(`"id":"187a3f0c2b9d4e10a1b2c3d4e5f60718"`, `"id":"a/b"`), "bad id"},
		{"bad source", repl(`203.0.113.7`, `203.0.113`), "bad source"},
		{"zoned source", repl(`203.0.113.7`, `fe80::1%eth0`), "bad source"},
		{"mapped source", repl(`203.0.113.7`, `::ffff:203.0.113.7`), "bad source"},
		{"unspecified source", repl(`203.0.113.7`, `0.0.0.0`), "cannot knock"},
		{"port 0", repl(`22/tcp`, `0/tcp`), "bad port"},
		{"port range", repl(`22/tcp`, `65536/tcp`), "out of range"},
		{"port proto", repl(`22/tcp`, `22/sctp`), "bad port"},
		{"port leading zero", repl(`22/tcp`, `022/tcp`), "bad port"},
		{"port no proto", repl(`22/tcp`, `22`), "bad port"},
		{"port twice", repl(`"53/udp"`, `"22/tcp"`), "listed twice"},
		{"ports not array", repl(`["22/tcp","53/udp"]`, `"22/tcp"`), "not an array"},
		{"port number", repl(`"22/tcp"`, `22`), "not a string"},
		{"deadline", repl(`2026-11-30T09:17:28.5Z`, `tomorrow`), "bad deadline"},
		{"deadline no zone", repl(`2026-11-30T09:17:28.5Z`, `2026-11-30T09:17:28`), "bad deadline"},
		{"origin", repl(`bastion-3`, `bastion/3`), "bad origin"},
		{"identity control", repl(`"alice"`, `"al\u0007ice"`), "control character"},
		{"invalid utf8", repl(`"alice"`, "\"al\xffice\""), "not valid UTF-8"},
		{"too long", repl(`"alice"`, `"`+strings.Repeat("a", MaxValueLen)+`"`), "bytes, at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.value))
			if err == nil {
				t.Fatalf("accepted %s", c.value)
			}
			var ve *ValueError
			if !errors.As(err, &ve) || !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %T %v is not a *ValueError matching ErrBadValue", err, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error %q does not say %q", err, c.reason)
			}
		})
	}
	if _, err := Parse([]byte(strings.Replace(goodValue, `"v":1`, `"v":7`, 1))); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 7: %v, want ErrUnsupportedVersion", err)
	}
}

func TestMarshalRefusesWhatParseRefuses(t *testing.T) {
	g, _ := Parse([]byte(goodValue))
	bad := []func(*Grant){
		func(g *Grant) { g.ID = "" },
		func(g *Grant) { g.Source = netip.Addr{} },
		func(g *Grant) { g.Open = append(g.Open, g.Open[0]) },
		func(g *Grant) { g.Deadline = time.Time{} },
		func(g *Grant) { g.Origin = "" },
		func(g *Grant) { g.Identity = "a\x00" },
	}
	for i, f := range bad {
		c := g
		c.Open = append([]knock.Port(nil), g.Open...)
		f(&c)
		if _, err := c.Marshal(); !errors.Is(err, ErrBadValue) {
			t.Errorf("case %d: Marshal accepted %+v (%v)", i, c, err)
		}
	}
}

func TestKeys(t *testing.T) {
	if k := GrantKey("bastions", "abc"); k != "/sesame/bastions/grants/abc" {
		t.Fatalf("GrantKey = %q", k)
	}
	for key, ok := range map[string]bool{
		"/sesame/g/grants/abc":                        true,
		"/sesame/g/grants/":                           false,
		"/sesame/g/grants/a/b":                        false,
		"/sesame/h/grants/abc":                        false,
		"/sesame/g/revoked/abc":                       false,
		"/sesame/g/grants/" + strings.Repeat("a", 33): false,
	} {
		if _, err := idFromKey("g", key); (err == nil) != ok {
			t.Errorf("idFromKey(%q): %v, want ok=%v", key, err, ok)
		}
	}
}

func TestLeaseTTL(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		deadline time.Duration
		slack    time.Duration
		want     int64
	}{
		{10 * time.Second, 30 * time.Second, 40},
		{10*time.Second + time.Millisecond, 30 * time.Second, 41}, // rounded up, never short
		{time.Millisecond, 0, 1},
		{time.Hour, time.Second, 3601},
	} {
		if got := leaseTTL(now.Add(c.deadline), now, c.slack); got != c.want {
			t.Errorf("leaseTTL(%s, slack %s) = %d, want %d", c.deadline, c.slack, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	min, max := 250*time.Millisecond, 15*time.Second
	for attempt, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second} {
		if got := backoffDelay(attempt, min, max, 0.999999); got > want || got < want*99/100 {
			t.Errorf("attempt %d, top of jitter: %s, want about %s", attempt, got, want)
		}
		if got := backoffDelay(attempt, min, max, 0); got != want/2 {
			t.Errorf("attempt %d, bottom of jitter: %s, want %s", attempt, got, want/2)
		}
	}
	if got := backoffDelay(1000, min, max, 0); got != max/2 {
		t.Errorf("attempt 1000: %s, want %s (no overflow)", got, max/2)
	}
}
