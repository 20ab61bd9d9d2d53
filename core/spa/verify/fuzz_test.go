package verify

import (
	"net/netip"
	"testing"

	"github.com/sesame-knock/sesame/core/spa"
)

// FuzzVerify: whatever arrives, Verify returns a verdict, and an accepted
// one carries a request within the stanza's rules.
func FuzzVerify(f *testing.F) {
	st := conf(f, main+"\nSOURCE ANY\nKEY_BASE64 %K\nHMAC_KEY_BASE64 %H\nREQUIRE_SOURCE_ADDRESS Y\n")
	f.Add(packet(f, spa.Message{Access: "198.51.100.7,tcp/22"}), []byte{198, 51, 100, 7})
	f.Add(packet(f, spa.Message{Access: "0.0.0.0,tcp/22,udp/53", ClientTimeout: 9}), []byte{10, 0, 0, 1})
	f.Add(seal(f, fields("1234567890123456", u64("alice"), ts(0), "3.0.0", "1", u64("198.51.100.7,tcp/22"))), []byte{198, 51, 100, 7})
	f.Fuzz(func(t *testing.T, pkt []byte, src []byte) {
		v := newVerifier(t, st)
		a, ok := netip.AddrFromSlice(src)
		if !ok {
			a = client4
		}
		got := v.Verify(pkt, a, server4, now)
		if (got.Reason == Accepted) != (got.Request != nil) {
			t.Fatalf("%s with request %v", got.Reason, got.Request)
		}
		if r := got.Request; r != nil {
			if _, ok := r.Stanza.AllowPorts(r.Ports); !ok || !r.Allow.IsValid() || r.Allow.IsUnspecified() || r.Timeout <= 0 {
				t.Fatalf("accepted request breaks its stanza: %+v", r)
			}
			if again := v.Verify(pkt, a, server4, now); again.Reason != Replay {
				t.Fatalf("second copy: %s", again.Reason)
			}
		}
	})
}
