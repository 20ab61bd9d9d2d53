package sshknock

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// noReplay lets the same packet verify again and again, so a benchmark
// measures the whole accepting path with one packet.
type noReplay struct{}

func (noReplay) Seen([32]byte, time.Time) bool { return false }
func (noReplay) Add([32]byte, time.Time) bool  { return true }

var unlimited = Budget{Every: time.Nanosecond, Burst: 1 << 30}

// benchSigners are keys of every verified type, made in Go (benchmarks
// need no ssh-keygen).
func benchSigners(b *testing.B) []struct {
	name string
	s    ssh.Signer
	hash string
} {
	b.Helper()
	mk := func(k crypto.Signer) ssh.Signer {
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	r3072, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		b.Fatal(err)
	}
	r4096, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		s    ssh.Signer
		hash string
	}{
		{"ssh-ed25519", mk(ed), ""},
		{"ecdsa-nistp256", mk(p256), ""},
		{"ecdsa-nistp384", mk(p384), ""},
		{"ecdsa-nistp521", mk(p521), ""},
		{"rsa3072-sha512", mk(r3072), ""},
		{"rsa3072-sha256", mk(r3072), "sha256"},
		{"rsa4096-sha512", mk(r4096), ""},
		{"rsa8192-sha512", rsa8192(b), ""},
		{"sk-ed25519", sshtest.NewFIDO(b, ssh.KeyAlgoSKED25519), ""},
		{"sk-ecdsa-nistp256", sshtest.NewFIDO(b, ssh.KeyAlgoSKECDSA256), ""},
	}
}

// BenchmarkVerify is the cost of accepting a knock, per key type: every
// check including the signature (the replay cache is a no-op here).
// bench/run writes its BENCHMARKS.md table (bench/sesame-bench/spareport.go
// names these cases and reads cost-units).
func BenchmarkVerify(b *testing.B) {
	for _, k := range benchSigners(b) {
		b.Run(k.name, func(b *testing.B) {
			ks := mustKeys(b, authLine(`open="tcp/22"`, k.s.PublicKey(), "bench"))
			v, err := NewVerifier(ks, Options{IsLocal: isLocal, Replay: noReplay{}, KeyBudget: unlimited, TotalBudget: unlimited, SourceBudget: unlimited})
			if err != nil {
				b.Fatal(err)
			}
			pkt := build(b, k.s, Knock{HashAlg: k.hash}, t0)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if vd := v.Verify(pkt, clientAddr, t0); vd.Reason != Accepted {
					b.Fatal(vd.Reason, vd.Detail)
				}
			}
			b.ReportMetric(float64(CheckCost(k.s.PublicKey())), "cost-units")
		})
	}
}

// cheapRefusals returns a Verifier and packets refused before any
// signature check: an unknown fingerprint, one whose key budget is spent,
// a stale one and a replay.
func cheapRefusals(tb testing.TB) (v *Verifier, unknown, budget, stale, replay []byte) {
	tb.Helper()
	// A P-521 key: its checks cost 96 units of a 128-unit burst, so one
	// accepted packet spends its budget.
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	listed, err := ssh.NewSignerFromKey(p521)
	if err != nil {
		tb.Fatal(err)
	}
	unlisted := goSigner(tb)
	ks := mustKeys(tb, authLine(`open="tcp/22"`, listed.PublicKey(), "listed"))
	v, _ = newVerifier(tb, ks, Options{KeyBudget: Budget{Every: time.Hour, Burst: MaxCheckCost}})
	replay = build(tb, listed, Knock{}, t0)
	if vd := v.Verify(replay, clientAddr, t0); vd.Reason != Accepted {
		tb.Fatal(vd.Reason)
	}
	unknown = build(tb, unlisted, Knock{}, t0)
	budget = build(tb, listed, Knock{}, t0)
	stale = build(tb, listed, Knock{}, t0.Add(-time.Hour))
	for name, c := range map[string]struct {
		pkt  []byte
		want Reason
	}{"unknown": {unknown, UnknownKey}, "budget": {budget, KeyBudget}, "stale": {stale, Stale}, "replay": {replay, Replay}} {
		if r := v.Verify(c.pkt, clientAddr, t0).Reason; r != c.want {
			tb.Fatalf("%s: %s, want %s", name, r, c.want)
		}
	}
	return v, unknown, budget, stale, replay
}

// BenchmarkRefused is the cost of the packets a flood is made of.
func BenchmarkRefused(b *testing.B) {
	v, unknown, budget, stale, replay := cheapRefusals(b)
	garbage := make([]byte, 300)
	copy(garbage, Magic+"\x01")
	rand.Read(garbage[len(Magic)+1:])
	for _, c := range []struct {
		name string
		pkt  []byte
		want Reason
	}{
		{"unknown-key", unknown, UnknownKey},
		{"random-after-magic", garbage, UnknownKey},
		{"stale", stale, Stale},
		{"replay", replay, Replay},
		{"key-budget", budget, KeyBudget},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if vd := v.Verify(c.pkt, clientAddr, t0); vd.Reason != c.want {
					b.Fatal(vd.Reason)
				}
			}
		})
	}
}

// TestCheapRefusalsDoNotAllocate: a flood of unknown-fingerprint,
// budget-refused, stale or replayed packets allocates nothing.
func TestCheapRefusalsDoNotAllocate(t *testing.T) {
	v, unknown, budget, stale, replay := cheapRefusals(t)
	for name, pkt := range map[string][]byte{"unknown": unknown, "budget": budget, "stale": stale, "replay": replay} {
		if n := testing.AllocsPerRun(200, func() { v.Verify(pkt, clientAddr, t0) }); n != 0 {
			t.Errorf("%s: %.1f allocations per packet", name, n)
		}
	}
}

// BenchmarkBuild is the client's cost of making a knock (Ed25519).
func BenchmarkBuild(b *testing.B) {
	s := goSigner(b)
	k := Knock{Server: serverAddr, Ports: []knock.Port{ssh22}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Build(rand.Reader, s, k, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// rsa8192 loads the RSA-8192 test key ssh-keygen made (slow to generate).
func rsa8192(tb testing.TB) ssh.Signer {
	b, err := os.ReadFile("testdata/rsa8192")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
