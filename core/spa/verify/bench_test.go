package verify

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/replay"
)

// The cost of one packet by kind, for the flood targets of issue 13:
//
//	go test -run '^$' -bench . -benchmem ./core/spa/verify/
//
// garbage: random base64 of an SPA packet's length from an allowed
// source (one HMAC per distinct stanza key); wrong-key: a well-formed
// packet with another HMAC key (the same); replay: a copy of an accepted
// packet; valid: a fresh packet accepted (HMAC, decryption, parsing,
// replay cache insert).
func BenchmarkVerify(b *testing.B) {
	for _, stanzas := range []int{1, 4} {
		text := main
		for i := 1; i < stanzas; i++ {
			// Stanzas before the real one, each with its own HMAC key.
			text = fmt.Sprintf("SOURCE ANY\nKEY_BASE64 %%K\nHMAC_KEY_BASE64 %s\n", b64([]byte(fmt.Sprint("hmac key ", i)))) + text
		}
		st := conf(b, text)
		valid := packet(b, spa.Message{Access: "198.51.100.7,tcp/22"})
		r := rand.New(rand.NewPCG(1, 2))
		garbage := make([]byte, len(valid))
		for i := range garbage {
			garbage[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[r.IntN(64)]
		}
		wrong := packetWith(b, spa.Message{Access: "198.51.100.7,tcp/22"}, spa.Keys{Key: key, HMACKey: []byte("another key")})
		for _, c := range []struct {
			name string
			pkt  []byte
			want Reason
		}{{"garbage", garbage, BadHMAC}, {"wrong-key", wrong, BadHMAC}, {"replay", valid, Replay}} {
			b.Run(fmt.Sprintf("%s/stanzas=%d", c.name, stanzas), func(b *testing.B) {
				v := newVerifier(b, st)
				if c.want == Replay {
					v.Verify(valid, client4, server4, now)
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(c.pkt)))
				for b.Loop() {
					if got := v.Verify(c.pkt, client4, server4, now); got.Reason != c.want {
						b.Fatal(got.Reason)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("valid/stanzas=%d", stanzas), func(b *testing.B) {
			const n = 1024
			pkts := make([][]byte, n)
			for i := range pkts {
				pkts[i] = packet(b, spa.Message{Access: "198.51.100.7,tcp/22"})
			}
			v := newVerifier(b, st)
			b.ReportAllocs()
			b.SetBytes(int64(len(pkts[0])))
			i := 0
			for b.Loop() {
				if i == n {
					// Every packet was used once: start over with an
					// empty cache (not timed).
					b.StopTimer()
					v.cache = replay.New()
					i = 0
					b.StartTimer()
				}
				if got := v.Verify(pkts[i], client4, server4, now); got.Reason != Accepted {
					b.Fatal(got.Reason)
				}
				i++
			}
		})
	}
}
