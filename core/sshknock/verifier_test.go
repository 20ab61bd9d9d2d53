package sshknock

import (
	"crypto/rand"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// TestAccepted: a knock signed by each key type (ssh-keygen's keys, from
// the key file and through a real ssh-agent) is accepted with the request
// it carries, IPv4 and IPv6.
func TestAccepted(t *testing.T) {
	names := []string{"ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa3072"}
	var lines []string
	for _, n := range names {
		k := keygen(t, n)
		lines = append(lines, authLine(`open="tcp/22,tcp/443,udp/53",timeout="60"`, k.Public, k.Comment))
	}
	ks := mustKeys(t, lines...)
	ag := sshtest.StartAgent(t)
	for _, n := range names {
		ag.Add(t, keygen(t, n))
	}
	keyring := ag.Keyring(t)
	for _, n := range names {
		k := keygen(t, n)
		agentSigner, _, err := AgentSigner(keyring, k.Comment)
		if err != nil {
			t.Fatal(err)
		}
		for via, s := range map[string]ssh.Signer{"file": k.Signer(t), "agent": agentSigner} {
			for _, fam := range []struct {
				server, src, allow netip.Addr
			}{
				{serverAddr, clientAddr, netip.Addr{}},
				{serverAddr6, clientAddr6, netip.Addr{}},
				{serverAddr, clientAddr, netip.MustParseAddr("203.0.113.9")},
				{serverAddr6, clientAddr, netip.MustParseAddr("2001:db8:2::9")},
			} {
				v, replay := newVerifier(t, ks, Options{})
				now := t0.Add(3 * time.Second)
				pkt := build(t, s, Knock{Server: fam.server, Allow: fam.allow, Ports: []knock.Port{https, dns}, Timeout: 45 * time.Second}, t0)
				vd := v.Verify(pkt, fam.src, now)
				if vd.Reason != Accepted {
					t.Fatalf("%s via %s %v: %s %s", n, via, fam, vd.Reason, vd.Detail)
				}
				r := vd.Request
				wantAllow := fam.allow
				if !wantAllow.IsValid() {
					wantAllow = fam.src
				}
				if r.Allow != wantAllow || r.Source != fam.src || r.Server != fam.server || r.Timeout != 45*time.Second ||
					FormatAccess(r.Ports) != "tcp/443,udp/53" || r.Comment != k.Comment || r.Fingerprint != FingerprintOf(k.Public) ||
					r.KeyType != k.Public.Type() || !r.Time.Equal(t0) || !r.ReplayUntil.Equal(t0.Add(DefaultMaxAge)) || vd.Key != ks.Lookup(r.Fingerprint) {
					t.Errorf("%s via %s: request %+v", n, via, r)
				}
				if r.Fingerprint.String() != ssh.FingerprintSHA256(k.Public) {
					t.Errorf("fingerprint %s, OpenSSH says %s", r.Fingerprint, ssh.FingerprintSHA256(k.Public))
				}
				if !replay.Seen(r.Digest, now) {
					t.Errorf("%s via %s: accepted digest not in the replay cache", n, via)
				}
			}
		}
	}
}

// TestRefusals: each refusal reason, with a packet that differs from an
// accepted one only in what the reason is about.
func TestRefusals(t *testing.T) {
	ed := keygen(t, "ed25519")
	other := keygen(t, "ed25519b")
	unlisted := keygen(t, "ecdsa256")
	fidoUP := sshtest.NewFIDO(t, ssh.KeyAlgoSKED25519)
	fidoUV := sshtest.NewFIDO(t, ssh.KeyAlgoSKECDSA256)
	ks := mustKeys(t,
		authLine(`open="tcp/22",from="198.51.100.0/24,2001:db8:1::/48,!198.51.100.66"`, ed.Public, "alice"),
		authLine(`open="tcp/22",expiry-time="202605011200Z"`, other.Public, "bob"),
		authLine(`open="tcp/22"`, fidoUP.PublicKey(), "carol-token"),
		authLine(`open="tcp/22",verify-required`, fidoUV.PublicKey(), "dave-token"),
	)
	edS := ed.Signer(t)
	good := func() Knock { return Knock{Server: serverAddr, Ports: []knock.Port{ssh22}} }
	now := t0.Add(time.Second)

	// A signature by another key under alice's fingerprint.
	forged := func() []byte {
		pkt := build(t, other.Signer(t), good(), t0)
		fp := FingerprintOf(ed.Public)
		copy(pkt[offFingerprint:], fp[:])
		return pkt
	}
	// alice's packet with one body byte changed after signing (the nonce).
	tampered := func() []byte {
		pkt := build(t, edS, good(), t0)
		pkt[offNonce] ^= 1
		return pkt
	}
	cases := []struct {
		name   string
		pkt    func() []byte
		src    netip.Addr
		now    time.Time
		want   Reason
		detail string
	}{
		{"accepted", func() []byte { return build(t, edS, good(), t0) }, clientAddr, now, Accepted, ""},
		{"not a knock", func() []byte { return []byte("U2FsdGVkX1" + strings.Repeat("A", 200)) }, clientAddr, now, Malformed, ""},
		{"truncated", func() []byte { return build(t, edS, good(), t0)[:minPacket-1] }, clientAddr, now, Malformed, ""},
		{"trailing byte", func() []byte { return append(build(t, edS, good(), t0), 0) }, clientAddr, now, Malformed, "after the signature"},
		{"key not listed", func() []byte { return build(t, unlisted.Signer(t), good(), t0) }, clientAddr, now, UnknownKey, ""},
		{"stale", func() []byte { return build(t, edS, good(), t0.Add(-DefaultMaxAge-time.Second)) }, clientAddr, t0, Stale, ""},
		{"from the future", func() []byte { return build(t, edS, good(), t0.Add(DefaultMaxAge+time.Second)) }, clientAddr, t0, Stale, ""},
		{"at max age", func() []byte { return build(t, edS, good(), t0.Add(-DefaultMaxAge)) }, clientAddr, t0, Accepted, ""},
		{"other server", func() []byte {
			k := good()
			k.Server = netip.MustParseAddr("192.0.2.2")
			return build(t, edS, k, t0)
		}, clientAddr, now, WrongServer, ""},
		{"forged signature", forged, clientAddr, now, BadSignature, ""},
		{"tampered body", tampered, clientAddr, now, BadSignature, ""},
		{"source outside from=", func() []byte { return build(t, edS, good(), t0) }, netip.MustParseAddr("203.0.113.1"), now, SourceNotAllowed, "source 203.0.113.1"},
		{"negated source", func() []byte { return build(t, edS, good(), t0) }, netip.MustParseAddr("198.51.100.66"), now, SourceNotAllowed, "source"},
		{"IPv6 source inside from=", func() []byte { return build(t, edS, good(), t0) }, clientAddr6, now, Accepted, ""},
		{"IPv4-mapped source inside from=", func() []byte { return build(t, edS, good(), t0) }, netip.AddrFrom16(clientAddr.As16()), now, Accepted, ""},
		{"allow address outside from=", func() []byte {
			k := good()
			k.Allow = netip.MustParseAddr("203.0.113.1")
			return build(t, edS, k, t0)
		}, clientAddr, now, SourceNotAllowed, "allow address 203.0.113.1"},
		{"expired key", func() []byte { return build(t, other.Signer(t), good(), t0) }, clientAddr, t0.Add(time.Second), KeyExpired, "expired"},
		{"expiry second itself", func() []byte { return build(t, other.Signer(t), good(), t0) }, clientAddr, t0.Add(999 * time.Millisecond), Accepted, ""},
		{"port not allowed", func() []byte {
			k := good()
			k.Ports = []knock.Port{ssh22, https}
			return build(t, edS, k, t0)
		}, clientAddr, now, PortNotAllowed, "tcp/443"},
		{"udp for a tcp port", func() []byte {
			k := good()
			k.Ports = []knock.Port{{Num: 22, Proto: knock.UDP}}
			return build(t, edS, k, t0)
		}, clientAddr, now, PortNotAllowed, "udp/22"},
		{"FIDO touched", func() []byte { fidoUP.Flags = 0x01; return build(t, fidoUP, good(), t0) }, clientAddr, now, Accepted, ""},
		{"FIDO not touched", func() []byte { fidoUP.Flags = 0x00; return build(t, fidoUP, good(), t0) }, clientAddr, now, NoUserPresence, ""},
		{"FIDO verify-required without UV", func() []byte { fidoUV.Flags = 0x01; return build(t, fidoUV, good(), t0) }, clientAddr, now, NoUserVerification, ""},
		{"FIDO verify-required with UV", func() []byte { fidoUV.Flags = 0x05; return build(t, fidoUV, good(), t0) }, clientAddr, now, Accepted, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, _ := newVerifier(t, ks, Options{})
			vd := v.Verify(c.pkt(), c.src, c.now)
			if vd.Reason != c.want || !strings.Contains(vd.Detail, c.detail) {
				t.Fatalf("got %s %q, want %s %q", vd.Reason, vd.Detail, c.want, c.detail)
			}
			if c.want >= Stale && vd.Key == nil {
				t.Errorf("%s: refusal does not name the claimed key", c.want)
			}
		})
	}
}

// TestReplay: a packet is accepted once; the same bytes again, and the
// same body with another (still valid) signature encoding, are replays;
// a replay that raced the first check is caught by Add.
func TestReplay(t *testing.T) {
	k := keygen(t, "ecdsa256")
	ks := mustKeys(t, authLine(`open="tcp/22"`, k.Public, "alice"))
	v, replay := newVerifier(t, ks, Options{})
	pkt := build(t, k.Signer(t), Knock{}, t0)
	if vd := v.Verify(pkt, clientAddr, t0); vd.Reason != Accepted {
		t.Fatalf("first: %s %s", vd.Reason, vd.Detail)
	}
	if vd := v.Verify(pkt, clientAddr, t0.Add(time.Minute)); vd.Reason != Replay {
		t.Fatalf("second: %s", vd.Reason)
	}
	// Re-sign the same body: a different signature, the same knock.
	p, err := Decode(pkt)
	if err != nil {
		t.Fatal(err)
	}
	resigned := resign(t, k.Signer(t), p.Body)
	if string(resigned) == string(pkt) {
		t.Fatal("ECDSA re-signing gave the same bytes")
	}
	if vd := v.Verify(resigned, netip.MustParseAddr("203.0.113.50"), t0.Add(time.Second)); vd.Reason != Replay {
		t.Fatalf("re-signed: %s", vd.Reason)
	}
	// Two copies verified at once: both pass Seen, one wins Add.
	v2, _ := newVerifier(t, ks, Options{})
	pkt2 := build(t, k.Signer(t), Knock{}, t0)
	p2, _ := Decode(pkt2)
	v2.opts.Replay = &racingReplay{memReplay: newReplay(), digest: p2.Digest()}
	if vd := v2.Verify(pkt2, clientAddr, t0); vd.Reason != Replay {
		t.Fatalf("raced copy: %s", vd.Reason)
	}
	if !replay.Seen(p.Digest(), t0.Add(DefaultMaxAge)) || replay.Seen(p.Digest(), t0.Add(DefaultMaxAge+time.Second)) {
		t.Error("the digest is not kept exactly until the packet's time plus MaxAge")
	}
}

// racingReplay answers Seen false and Add false for one digest: what a
// concurrent Verify of the same packet looks like from here.
type racingReplay struct {
	*memReplay
	digest [32]byte
}

func (r *racingReplay) Add(d [32]byte, until time.Time) bool {
	if d == r.digest {
		return false
	}
	return r.memReplay.Add(d, until)
}

// resign builds a packet from body signed again by s.
func resign(t *testing.T, s ssh.Signer, body []byte) []byte {
	t.Helper()
	pkt, err := signBody(rand.Reader, s, body, "sha512")
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// TestTimeout: the packet's timeout is honoured up to the key's
// timeout=; 0 means the key's.
func TestTimeout(t *testing.T) {
	k := keygen(t, "ed25519")
	ks := mustKeys(t, authLine(`open="tcp/22",timeout="60"`, k.Public, "alice"))
	for _, c := range []struct{ ask, want time.Duration }{
		{0, 60 * time.Second}, {10 * time.Second, 10 * time.Second}, {60 * time.Second, 60 * time.Second}, {3600 * time.Second, 60 * time.Second},
	} {
		v, _ := newVerifier(t, ks, Options{})
		vd := v.Verify(build(t, k.Signer(t), Knock{Timeout: c.ask}, t0), clientAddr, t0)
		if vd.Reason != Accepted || vd.Request.Timeout != c.want {
			t.Errorf("ask %v: %s, timeout %v (want %v)", c.ask, vd.Reason, vd.Request.Timeout, c.want)
		}
	}
	ks = mustKeys(t, authLine(`open="tcp/22"`, k.Public, "alice"))
	v, _ := newVerifier(t, ks, Options{})
	if vd := v.Verify(build(t, k.Signer(t), Knock{}, t0), clientAddr, t0); vd.Request.Timeout != DefaultTimeout {
		t.Errorf("default timeout %v", vd.Request.Timeout)
	}
}

// TestBudgets: a flood of forged packets claiming alice's key spends
// alice's budget only: bob still gets in at once, alice again once her
// bucket refills; checks are weighted by key type (a P-521 check costs
// 96 Ed25519 checks); the total budget caps all keys together; and
// refusals before the budget (stale, wrong server, replay) spend nothing.
func TestBudgets(t *testing.T) {
	alice, bob, carol := keygen(t, "ed25519"), keygen(t, "ed25519b"), keygen(t, "ecdsa521")
	ks := mustKeys(t, authLine(`open="tcp/22"`, alice.Public, "alice"), authLine(`open="tcp/22"`, bob.Public, "bob"),
		authLine(`open="tcp/22"`, carol.Public, "carol"))
	kb := Budget{Every: time.Second, Burst: MaxCheckCost}
	v, _ := newVerifier(t, ks, Options{KeyBudget: kb, TotalBudget: Budget{Every: time.Millisecond, Burst: 1000}})
	// Forged: bob signs, someone else's fingerprint is claimed.
	forge := func(victim sshtest.Key, at time.Time) []byte {
		pkt := build(t, bob.Signer(t), Knock{}, at)
		fp := FingerprintOf(victim.Public)
		copy(pkt[offFingerprint:], fp[:])
		return pkt
	}
	now := t0
	for i := 0; i < kb.Burst; i++ {
		if vd := v.Verify(forge(alice, now), clientAddr, now); vd.Reason != BadSignature {
			t.Fatalf("forged %d: %s", i, vd.Reason)
		}
	}
	for i := 0; i < 100; i++ {
		if vd := v.Verify(forge(alice, now), clientAddr, now); vd.Reason != KeyBudget {
			t.Fatalf("forged %d past the burst: %s", i, vd.Reason)
		}
	}
	if vd := v.Verify(build(t, alice.Signer(t), Knock{}, now), clientAddr, now); vd.Reason != KeyBudget {
		t.Fatalf("alice during the flood: %s", vd.Reason)
	}
	if vd := v.Verify(build(t, bob.Signer(t), Knock{}, now), clientAddr, now); vd.Reason != Accepted {
		t.Fatalf("bob during the flood on alice's key: %s", vd.Reason)
	}
	now = now.Add(kb.Every)
	if vd := v.Verify(build(t, alice.Signer(t), Knock{}, now), clientAddr, now); vd.Reason != Accepted {
		t.Fatalf("alice after a refill: %s", vd.Reason)
	}
	// carol's P-521 checks cost 96 of the 128: one, then refused.
	if vd := v.Verify(forge(carol, now), clientAddr, now); vd.Reason != BadSignature {
		t.Fatalf("carol's first: %s", vd.Reason)
	}
	if vd := v.Verify(forge(carol, now), clientAddr, now); vd.Reason != KeyBudget {
		t.Fatalf("carol's second: %s", vd.Reason)
	}
	if vd := v.Verify(build(t, carol.Signer(t), Knock{}, now.Add(96*kb.Every)), clientAddr, now.Add(96*kb.Every)); vd.Reason != Accepted {
		t.Fatalf("carol once 96 units came back: %s %s", vd.Reason, vd.Detail)
	}

	// Total: 130 units in a burst across keys, then TotalBudget.
	v, _ = newVerifier(t, ks, Options{KeyBudget: Budget{Every: time.Nanosecond, Burst: 1 << 20}, TotalBudget: Budget{Every: time.Second, Burst: 130}})
	for i := 0; i < 130; i++ {
		s := alice.Signer(t)
		if i%2 == 1 {
			s = bob.Signer(t)
		}
		if vd := v.Verify(build(t, s, Knock{}, t0), clientAddr, t0); vd.Reason != Accepted {
			t.Fatalf("check %d: %s", i, vd.Reason)
		}
	}
	if vd := v.Verify(build(t, bob.Signer(t), Knock{}, t0), clientAddr, t0); vd.Reason != TotalBudget {
		t.Fatalf("past the total: %s", vd.Reason)
	}

	// Cheap refusals spend nothing: carol can afford one P-521 check,
	// and still has it after 1000 stale and wrong-server packets.
	hour := Budget{Every: time.Hour, Burst: MaxCheckCost}
	v, _ = newVerifier(t, ks, Options{KeyBudget: hour, TotalBudget: hour})
	stale := build(t, carol.Signer(t), Knock{}, t0.Add(-time.Hour))
	elsewhere := build(t, carol.Signer(t), Knock{Server: netip.MustParseAddr("192.0.2.99")}, t0)
	for i := 0; i < 1000; i++ {
		if r := v.Verify(stale, clientAddr, t0).Reason; r != Stale {
			t.Fatalf("stale: %s", r)
		}
		if r := v.Verify(elsewhere, clientAddr, t0).Reason; r != WrongServer {
			t.Fatalf("elsewhere: %s", r)
		}
	}
	pkt := build(t, carol.Signer(t), Knock{}, t0)
	if r := v.Verify(pkt, clientAddr, t0).Reason; r != Accepted {
		t.Fatalf("good after cheap refusals: %s", r)
	}
	for i := 0; i < 1000; i++ {
		if r := v.Verify(pkt, clientAddr, t0).Reason; r != Replay {
			t.Fatalf("replay: %s", r)
		}
	}
}

// TestCheckCost: costs by type and size, within MaxCheckCost.
func TestCheckCost(t *testing.T) {
	for name, want := range map[string]int{"ed25519": 1, "ecdsa256": 2, "ecdsa384": 32, "ecdsa521": 96, "rsa3072": 5, "rsa2048": 3} {
		if got := CheckCost(keygen(t, name).Public); got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
	if got := CheckCost(sshtest.NewFIDO(t, ssh.KeyAlgoSKECDSA256).PublicKey()); got != 2 {
		t.Errorf("sk-ecdsa: %d", got)
	}
	b, err := os.ReadFile("testdata/rsa8192.pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := CheckCost(pub); got != 36 {
		t.Errorf("rsa8192: %d", got)
	}
	if b := (Budget{Every: time.Second, Burst: 3}).orDefault(DefaultKeyBudget); b.Burst != MaxCheckCost || b.Every != time.Second {
		t.Errorf("small burst not raised: %+v", b)
	}
}

// TestSetKeys: a reload that drops a key refuses it at once, Removed
// names it for revocation, and a kept key keeps its spent budget.
func TestSetKeys(t *testing.T) {
	alice, bob := keygen(t, "ecdsa521"), keygen(t, "ed25519b")
	before := mustKeys(t, authLine(`open="tcp/22"`, alice.Public, "alice"), authLine(`open="tcp/22"`, bob.Public, "bob"))
	after := mustKeys(t, authLine(`open="tcp/22"`, alice.Public, "alice"))
	v, _ := newVerifier(t, before, Options{KeyBudget: Budget{Every: time.Hour, Burst: MaxCheckCost}})
	if r := v.Verify(build(t, alice.Signer(t), Knock{}, t0), clientAddr, t0).Reason; r != Accepted {
		t.Fatal(r)
	}
	v.SetKeys(after)
	if v.Keys() != after {
		t.Error("Keys() is not the new set")
	}
	if r := v.Verify(build(t, bob.Signer(t), Knock{}, t0), clientAddr, t0).Reason; r != UnknownKey {
		t.Errorf("removed key: %s", r)
	}
	if r := v.Verify(build(t, alice.Signer(t), Knock{}, t0), clientAddr, t0).Reason; r != KeyBudget {
		t.Errorf("kept key's budget was reset: %s", r)
	}
	gone := after.Removed(before)
	if len(gone) != 1 || gone[0].Comment != "bob" {
		t.Errorf("Removed: %v", gone)
	}
	if r := before.Removed(after); len(r) != 0 {
		t.Errorf("Removed the other way: %v", r)
	}
}

// TestNewVerifierNeeds: IsLocal and Replay are required.
func TestNewVerifierNeeds(t *testing.T) {
	if _, err := NewVerifier(nil, Options{Replay: newReplay()}); err == nil {
		t.Error("no IsLocal accepted")
	}
	if _, err := NewVerifier(nil, Options{IsLocal: isLocal}); err == nil {
		t.Error("no Replay accepted")
	}
	v, err := NewVerifier(nil, Options{IsLocal: isLocal, Replay: newReplay()})
	if err != nil {
		t.Fatal(err)
	}
	k := keygen(t, "ed25519")
	if r := v.Verify(build(t, k.Signer(t), Knock{}, t0), clientAddr, t0).Reason; r != UnknownKey {
		t.Errorf("no keys: %s", r)
	}
}

// TestReasonNames: every reason has its own name.
func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := Accepted; r <= PortNotAllowed; r++ {
		n := r.String()
		if n == "" || strings.HasPrefix(n, "reason(") || seen[n] {
			t.Errorf("reason %d: name %q", r, n)
		}
		seen[n] = true
	}
}

// TestConcurrentVerify: Verify from several goroutines while SetKeys
// swaps the keys (run with -race): each packet is accepted exactly once.
func TestConcurrentVerify(t *testing.T) {
	k := goSigner(t)
	ks := mustKeys(t, authLine(`open="tcp/22"`, k.PublicKey(), "alice"))
	v, _ := newVerifier(t, ks, Options{})
	const n = 40
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = build(t, k, Knock{}, t0)
	}
	accepted := make(chan int, 4*n)
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i, p := range pkts {
				if v.Verify(p, clientAddr, t0).Reason == Accepted {
					accepted <- i
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		v.SetKeys(mustKeys(t, authLine(`open="tcp/22"`, k.PublicKey(), "alice")))
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	close(accepted)
	seen := map[int]int{}
	for i := range accepted {
		seen[i]++
	}
	for i := 0; i < n; i++ {
		if seen[i] != 1 {
			t.Errorf("packet %d accepted %d times", i, seen[i])
		}
	}
}

// TestSourceBudget: a flood of forged packets naming alice's key from one
// address spends that address's budget (4 checks, then one per 2 s) and
// only a few of alice's units, so alice gets in at once from elsewhere;
// the check refused for the source's budget spends nothing of the key's.
// Sources past MaxSources share one budget.
func TestSourceBudget(t *testing.T) {
	alice, bob := keygen(t, "ed25519"), keygen(t, "ed25519b")
	ks := mustKeys(t, authLine(`open="tcp/22"`, alice.Public, "alice"))
	kb := Budget{Every: time.Hour, Burst: MaxCheckCost} // no refill during the test
	v, _ := newVerifier(t, ks, Options{KeyBudget: kb, SourceBudget: DefaultSourceBudget})
	forged := func(at time.Time) []byte {
		pkt := build(t, bob.Signer(t), Knock{}, at)
		fp := FingerprintOf(alice.Public)
		copy(pkt[offFingerprint:], fp[:])
		return pkt
	}
	flooder := netip.MustParseAddr("2001:db8:1:2::66")
	for i := 0; i < 1000; i++ {
		want := SourceBudget
		if i < DefaultSourceBudget.Burst {
			want = BadSignature
		}
		// Another address of the flooder's /64 shares its budget.
		src := flooder
		if i%2 == 1 {
			src = netip.MustParseAddr("2001:db8:1:2::67")
		}
		if r := v.Verify(forged(t0), src, t0).Reason; r != want {
			t.Fatalf("forged %d: %s, want %s", i, r, want)
		}
	}
	if vd := v.Verify(build(t, alice.Signer(t), Knock{}, t0), clientAddr, t0); vd.Reason != Accepted {
		t.Fatalf("alice during the flood from %s: %s", flooder, vd.Reason)
	}
	// The flooder's budget comes back one check per 2 s.
	later := t0.Add(DefaultSourceBudget.Every)
	if r := v.Verify(forged(later), flooder, later).Reason; r != BadSignature {
		t.Fatalf("forged after %v: %s", DefaultSourceBudget.Every, r)
	}
	if r := v.Verify(forged(later), flooder, later).Reason; r != SourceBudget {
		t.Fatalf("second forged after %v: %s", DefaultSourceBudget.Every, r)
	}

	// Past MaxSources, new sources share the overflow budget.
	v, _ = newVerifier(t, ks, Options{KeyBudget: unlimited, TotalBudget: unlimited, SourceBudget: Budget{Every: time.Hour, Burst: 1}})
	pkt := forged(t0)
	for i := 0; i < MaxSources; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if r := v.Verify(pkt, src, t0).Reason; r != BadSignature {
			t.Fatalf("source %d: %s", i, r)
		}
	}
	if len(v.sources) != MaxSources {
		t.Fatalf("%d sources tracked, want %d", len(v.sources), MaxSources)
	}
	overflow := []Reason{BadSignature, SourceBudget}
	for i, want := range overflow {
		src := netip.AddrFrom4([4]byte{198, 19, 0, byte(i)})
		if r := v.Verify(pkt, src, t0).Reason; r != want {
			t.Errorf("overflow source %d: %s, want %s", i, r, want)
		}
	}
	// Once their buckets are full again they are forgotten.
	t2 := t0.Add(2 * time.Hour)
	if r := v.Verify(forged(t2), netip.MustParseAddr("198.19.1.1"), t2).Reason; r != BadSignature || len(v.sources) != 1 {
		t.Errorf("after the buckets refilled: %s, %d sources tracked", r, len(v.sources))
	}
}
