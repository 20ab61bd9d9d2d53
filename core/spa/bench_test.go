package spa

import "testing"

// The HMAC check per digest type: the whole cost of a garbage packet
// for one stanza key (go test -run '^$' -bench MAC -benchmem ./core/spa/).
func BenchmarkMACVerify(b *testing.B) {
	pkt := mustEncode(b, tMsg(), Keys{Key: tKey, HMACKey: tHMAC[:64]})
	for h := SHA256; h <= SHA3_512; h++ {
		b.Run(h.String(), func(b *testing.B) {
			mac, err := NewMAC(h, tHMAC[:64])
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if mac.Verify(pkt) && h != SHA256 {
					b.Fatal("verified with the wrong digest type")
				}
			}
		})
	}
}

// Open after a verified HMAC: decryption, digest and fields.
func BenchmarkOpen(b *testing.B) {
	pkt := mustEncode(b, tMsg(), Keys{Key: tKey, HMACKey: tHMAC[:64]})
	body, _, _ := Split(pkt, SHA256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(body, tKey, CBC); err != nil {
			b.Fatal(err)
		}
	}
}
