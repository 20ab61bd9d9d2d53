package verify

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/replay"
)

const main = `
SOURCE 198.51.100.0/24, 2001:db8::/32
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
OPEN_PORTS tcp/22, udp/53
RESTRICT_PORTS udp/53
FW_ACCESS_TIMEOUT 40
MAX_FW_TIMEOUT 100
`

// One refusal reason per case, each with the stanza that decided it.
func TestReasons(t *testing.T) {
	st := conf(t, main+`
SOURCE 203.0.113.0/24
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
REQUIRE_SOURCE_ADDRESS Y
REQUIRE_USERNAME bob
ACCESS_EXPIRE_EPOCH 1900000000

SOURCE 192.0.2.0/24
DESTINATION 192.0.2.99
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
ACCESS_EXPIRE_EPOCH 1700000000
`)
	acc := func(a string) spa.Message { return spa.Message{Access: a} }
	other := spa.Keys{Key: key, HMACKey: []byte("not the HMAC key")}
	wrongKey := spa.Keys{Key: []byte("not the key"), HMACKey: hmacKey}
	u, a := u64("alice"), u64("198.51.100.7,tcp/22")
	third := netip.MustParseAddr("192.0.2.5")
	for _, c := range []struct {
		name   string
		pkt    []byte
		src    netip.Addr
		dst    netip.Addr
		want   Reason
		stanza int
	}{
		{"garbage", []byte("hello"), client4, server4, NotSPA, 0},
		{"no stanza for the source", packet(t, acc("10.0.0.1,tcp/22")), netip.MustParseAddr("10.0.0.1"), server4, SourceNotAllowed, 0},
		{"DESTINATION does not match", packet(t, acc("192.0.2.5,tcp/22")), third, server4, SourceNotAllowed, 0},
		{"other HMAC key", packetWith(t, acc("198.51.100.7,tcp/22"), other), client4, server4, BadHMAC, 1},
		{"expired stanza", packet(t, acc("192.0.2.5,tcp/22")), third, netip.MustParseAddr("192.0.2.99"), StanzaExpired, 3},
		{"wrong Rijndael key", packetWith(t, acc("198.51.100.7,tcp/22"), wrongKey), client4, server4, Undecryptable, 1},
		{"bad digest", seal(t, strings.Join([]string{"1234567890123456", u, ts(0), "3.0.0", "1", a, strings.Repeat("A", 43)}, ":")), client4, server4, BadDigest, 1},
		{"malformed", seal(t, fields("1234567890123456", u, ts(0), "3.0.0", "9", a)), client4, server4, Malformed, 1},
		{"stale", packet(t, spa.Message{Access: "198.51.100.7,tcp/22", Timestamp: now.Add(-121 * time.Second).Unix()}), client4, server4, Stale, 1},
		{"from the future", packet(t, spa.Message{Access: "198.51.100.7,tcp/22", Timestamp: now.Add(121 * time.Second).Unix()}), client4, server4, Stale, 1},
		{"source address required", packet(t, spa.Message{Access: "0.0.0.0,tcp/22", User: "bob"}), netip.MustParseAddr("203.0.113.9"), server4, SourceRequired, 2},
		{"user", packet(t, acc("203.0.113.9,tcp/22")), netip.MustParseAddr("203.0.113.9"), server4, UserNotAllowed, 2},
		{"NAT", packet(t, spa.Message{Type: spa.NATAccessMsg, Access: "198.51.100.7,tcp/22", NATAccess: "10.0.0.5,22"}), client4, server4, NATRefused, 1},
		{"command", packet(t, acc("198.51.100.7,reboot")), client4, server4, CommandRefused, 1},
		{"restricted port", packet(t, acc("198.51.100.7,tcp/22,udp/53")), client4, server4, PortNotAllowed, 1},
		{"port not open", packet(t, acc("198.51.100.7,tcp/2222")), client4, server4, PortNotAllowed, 1},
		{"icmp", packet(t, acc("198.51.100.7,icmp/8")), client4, server4, PortNotAllowed, 1},
		{"accepted", packet(t, acc("198.51.100.7,tcp/22")), client4, server4, Accepted, 1},
		{"accepted, -s", packet(t, acc("0.0.0.0,tcp/22")), client4, server4, Accepted, 1},
	} {
		v := newVerifier(t, st)
		got := v.Verify(c.pkt, c.src, c.dst, now)
		n := 0
		if got.Stanza != nil {
			n = got.Stanza.Num
		}
		if got.Reason != c.want || n != c.stanza {
			t.Errorf("%s: %s (stanza %d, %q), want %s (stanza %d)", c.name, got.Reason, n, got.Detail, c.want, c.stanza)
		}
		if (got.Request != nil) != (c.want == Accepted) {
			t.Errorf("%s: request %v", c.name, got.Request)
		}
	}
}

func TestAcceptedRequest(t *testing.T) {
	v := newVerifier(t, conf(t, main))
	src := netip.MustParseAddr("2001:db8::7")
	for _, c := range []struct {
		msg     spa.Message
		allow   string
		ports   string
		timeout time.Duration
	}{
		{spa.Message{Access: "198.51.100.9,tcp/22,tcp/22"}, "198.51.100.9", "22:tcp", 40 * time.Second},
		{spa.Message{Access: "0.0.0.0,tcp/22", ClientTimeout: 45}, "2001:db8::7", "22:tcp", 45 * time.Second},
		{spa.Message{Access: "2001:db8::1:2,tcp/22", ClientTimeout: 1000}, "2001:db8::1:2", "22:tcp", 100 * time.Second},
	} {
		pkt := packet(t, c.msg)
		got := v.Verify(pkt, src, server4, now)
		r := got.Request
		if got.Reason != Accepted || r == nil {
			t.Fatalf("%+v: %s %s", c.msg, got.Reason, got.Detail)
		}
		if r.Allow.String() != c.allow || knock.FormatSequence(r.Ports) != c.ports || r.Timeout != c.timeout ||
			r.User != "alice" || r.Source != src || r.Stanza.Num != 1 || !r.Sent.Equal(now) {
			t.Errorf("%+v: request %+v", c.msg, r)
		}
		if r.Replay.Digest != replay.DigestOf(pkt) || !r.Replay.Expires.Equal(now.Add(121*time.Second)) {
			t.Errorf("replay entry %v, want the packet's digest until its timestamp + 121s", r.Replay)
		}
	}
}

// The edges of SPA_Max_Age are fwknopd's: 120 s either way is fresh.
func TestMaxAge(t *testing.T) {
	for _, c := range []struct {
		age    time.Duration
		maxAge time.Duration
		want   Reason
	}{
		{120 * time.Second, 0, Accepted},
		{-120 * time.Second, 0, Accepted},
		{121 * time.Second, 0, Stale},
		{30 * time.Second, 30 * time.Second, Accepted},
		{31 * time.Second, 30 * time.Second, Stale},
	} {
		v, err := New(conf(t, main), replay.New(), Options{MaxAge: c.maxAge})
		if err != nil {
			t.Fatal(err)
		}
		pkt := packet(t, spa.Message{Access: "198.51.100.7,tcp/22", Timestamp: now.Add(-c.age).Unix()})
		if got := v.Verify(pkt, client4, server4, now); got.Reason != c.want {
			t.Errorf("age %s, max %s: %s, want %s", c.age, c.maxAge, got.Reason, c.want)
		}
	}
}

// A packet is accepted once. Its copies are refused, also by a new
// Verifier whose cache was restored from what the daemon journaled (a
// restart), until the packet would be stale anyway.
func TestReplay(t *testing.T) {
	st := conf(t, main)
	cache := replay.New()
	v, _ := New(st, cache, Options{})
	pkt := packet(t, spa.Message{Access: "198.51.100.7,tcp/22"})
	first := v.Verify(pkt, client4, server4, now)
	if first.Reason != Accepted {
		t.Fatalf("first: %s", first.Reason)
	}
	if got := v.Verify(pkt, client4, server4, now.Add(time.Second)); got.Reason != Replay {
		t.Fatalf("copy: %s", got.Reason)
	}
	// Another source sending the same packet is a replay too.
	if got := v.Verify(pkt, netip.MustParseAddr("198.51.100.99"), server4, now); got.Reason != Replay {
		t.Fatalf("copy from elsewhere: %s", got.Reason)
	}

	restarted := replay.New()
	if n, err := restarted.Restore([]replay.Entry{first.Request.Replay}, now.Add(5*time.Second)); n != 1 || err != nil {
		t.Fatalf("Restore: %d %v", n, err)
	}
	v2, _ := New(st, restarted, Options{})
	if restarted.Seen(pkt, now.Add(10*time.Second)) {
		t.Fatal("a restored digest is found by the packet's text before any copy came")
	}
	if got := v2.Verify(pkt, client4, server4, now.Add(10*time.Second)); got.Reason != Replay || got.Stanza == nil {
		t.Fatalf("after restart: %s (stanza %v), want replay found after the HMAC", got.Reason, got.Stanza)
	}
	// Its next copies cost no HMAC: the quick path knows it now.
	if got := v2.Verify(pkt, client4, server4, now.Add(11*time.Second)); got.Reason != Replay || got.Stanza != nil {
		t.Fatalf("second copy after restart: %s (stanza %v), want replay found before the HMAC", got.Reason, got.Stanza)
	}
	// Without the journal the copy would have opened the door again.
	v3, _ := New(st, replay.New(), Options{})
	if got := v3.Verify(pkt, client4, server4, now.Add(10*time.Second)); got.Reason != Accepted {
		t.Fatalf("fresh cache: %s", got.Reason)
	}
	// Past its age the copy is stale, whatever the cache holds.
	if got := v2.Verify(pkt, client4, server4, now.Add(121*time.Second)); got.Reason != Stale {
		t.Fatalf("late copy: %s", got.Reason)
	}
}

// A genuine packet that was refused enters the cache: its copies cost no
// HMAC and say "replay".
func TestRefusedPacketCached(t *testing.T) {
	v := newVerifier(t, conf(t, main))
	pkt := packet(t, spa.Message{Access: "198.51.100.7,tcp/2222"})
	if got := v.Verify(pkt, client4, server4, now); got.Reason != PortNotAllowed {
		t.Fatal(got.Reason)
	}
	if got := v.Verify(pkt, client4, server4, now); got.Reason != Replay || got.Stanza != nil {
		t.Fatalf("copy: %s, stanza %v (want the fast path)", got.Reason, got.Stanza)
	}
}

// Stanzas are tried in order; the first that accepts grants, and a
// refusal reports the stanza the packet got furthest with.
func TestStanzaOrder(t *testing.T) {
	other := "b3RoZXIgSE1BQyBrZXk=" // another HMAC key
	st := conf(t, `
SOURCE ANY
KEY_BASE64 %K
HMAC_KEY_BASE64 `+other+`
SOURCE ANY
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
OPEN_PORTS tcp/22
SOURCE 198.51.100.0/24
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
OPEN_PORTS tcp/443
SOURCE ANY
KEY_BASE64 %K
HMAC_KEY_BASE64 %H
OPEN_PORTS tcp/8080
ACCESS_EXPIRE_EPOCH 1
`)
	v := newVerifier(t, st)
	check := func(access string, src netip.Addr, want Reason, stanza int) {
		t.Helper()
		got := v.Verify(packet(t, spa.Message{Access: access}), src, server4, now)
		if got.Reason != want || got.Stanza == nil || got.Stanza.Num != stanza {
			t.Errorf("%s from %s: %s stanza %v, want %s stanza %d", access, src, got.Reason, got.Stanza, want, stanza)
		}
	}
	check("198.51.100.7,tcp/22", client4, Accepted, 2)
	check("198.51.100.7,tcp/443", client4, Accepted, 3)       // stanza 2 refuses the port, 3 takes it
	check("198.51.100.7,tcp/443", server4, PortNotAllowed, 2) // 3 does not match 192.0.2.1
	check("198.51.100.7,tcp/8080", client4, PortNotAllowed, 2)
	if len(v.macs) != 2 {
		t.Errorf("%d HMAC states for 2 distinct keys", len(v.macs))
	}
}

// Garbage, a wrong key and a replay cost no allocation.
func TestHotPathDoesNotAllocate(t *testing.T) {
	st := conf(t, main+"\nSOURCE ANY\nKEY_BASE64 %K\nHMAC_KEY_BASE64 b3RoZXIgSE1BQyBrZXk=\nHMAC_DIGEST_TYPE sha512\n")
	v := newVerifier(t, st)
	garbage := []byte(strings.Repeat("QUJD", 60))
	wrong := packetWith(t, spa.Message{Access: "198.51.100.7,tcp/22"}, spa.Keys{Key: key, HMACKey: []byte("nope")})
	valid := packet(t, spa.Message{Access: "198.51.100.7,tcp/22"})
	if got := v.Verify(valid, client4, server4, now); got.Reason != Accepted {
		t.Fatal(got.Reason)
	}
	for name, p := range map[string][]byte{"garbage": garbage, "wrong key": wrong, "replay": valid} {
		if n := testing.AllocsPerRun(200, func() { v.Verify(p, client4, server4, now) }); n != 0 {
			t.Errorf("%s: %.1f allocations per packet", name, n)
		}
	}
}

func TestFields(t *testing.T) {
	v := newVerifier(t, conf(t, main))
	got := v.Verify(packet(t, spa.Message{Access: "198.51.100.7,tcp/2222"}), client4, server4, now)
	f := map[string]any{}
	kv := got.Fields()
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i].(string)] = kv[i+1]
	}
	if f["auth"] != "fwknop" || f["reason"] != "port not allowed" || f["user"] != "alice" || f["stanza"] != "spa#1" ||
		f["stanza_at"] != "access.conf:2" || f["detail"] != "tcp/2222 not allowed" {
		t.Errorf("fields %v", f)
	}
	if kv := (Verdict{Reason: BadHMAC}).Fields(); len(kv) != 4 {
		t.Errorf("bad HMAC fields %v", kv)
	}
}
