package daemon

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/spa/replay"
)

// BenchmarkSPAPath is what one SPA packet costs sesamed from the
// capture's hand-off to the verdict, refused: the copy into the queue,
// the verifier, the count and the refusal's (rate-limited) log line.
// Each case is one kind of packet a flood is made of:
//
//   - fwknop-garbage: random base64 of an SPA packet's size (one HMAC);
//   - fwknop-not-spa: binary junk (refused before any HMAC);
//   - fwknop-replay: a packet accepted earlier (a keyed 64-bit hash);
//   - fwknop-replay-restored: one accepted before a restart, its digest
//     from the journal (HMAC, decryption and the digest);
//   - ssh-unknown-key: an SSH-signed knock naming a key not listed;
//   - ssh-replay: an SSH knock accepted earlier (no signature check).
//
// bench/run writes its BENCHMARKS.md table (bench/sesame-bench/spareport.go
// names these cases).
func BenchmarkSPAPath(b *testing.B) {
	alice := newSSHKey(b, `open="tcp/22"`, "alice")
	mk := func() *spaRig { return newSPARig(b, accessConf(""), alice) }
	junk := make([]byte, 220)
	rand.Read(junk)
	garbage := []byte(base64.RawStdEncoding.EncodeToString(junk[:160]))
	cases := []struct {
		name  string
		setup func(r *spaRig) []byte
	}{
		{"fwknop-garbage", func(*spaRig) []byte { return garbage }},
		{"fwknop-not-spa", func(*spaRig) []byte { return bytes.Repeat([]byte{0xff}, 200) }},
		{"fwknop-replay", func(r *spaRig) []byte {
			pkt := fwknopPacket(b, spaCli.String(), "tcp/22", r.now)
			r.send(spaCli, pkt)
			return pkt
		}},
		{"fwknop-replay-restored", func(r *spaRig) []byte {
			pkt := fwknopPacket(b, spaCli.String(), "tcp/22", r.now)
			if _, err := r.s.cache.Restore([]replay.Entry{{Digest: replay.DigestOf(pkt), Expires: r.now.Add(time.Minute)}}, r.now); err != nil {
				b.Fatal(err)
			}
			return pkt
		}},
		{"ssh-unknown-key", func(r *spaRig) []byte {
			return newSSHKey(b, `open="tcp/22"`, "x").knock(b, spaSrv, r.now, tcp22)
		}},
		{"ssh-replay", func(r *spaRig) []byte {
			pkt := alice.knock(b, spaSrv, r.now, tcp22)
			r.send(spaCli, pkt)
			return pkt
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := mk()
			pkt := c.setup(r)
			before := len(r.grants.all())
			// Past the refusal lines' burst: a flood's packets are not logged.
			for range 20 {
				r.send(spaFlood, pkt)
			}
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.send(spaFlood, pkt)
			}
			b.StopTimer()
			if n := len(r.grants.all()); n != before {
				b.Fatalf("%s opened: %d requests", c.name, n-before)
			}
		})
	}
}
