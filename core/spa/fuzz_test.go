package spa

import (
	"testing"
)

// FuzzOpen feeds arbitrary packet text to the server's path: Precheck,
// the HMAC check and Open with every mode. Nothing may panic, and what
// Open accepts must be a well-formed message.
func FuzzOpen(f *testing.F) {
	k := Keys{Key: tKey, HMACKey: tHMAC}
	for mode := CBC; mode <= Legacy; mode++ {
		k.Mode = mode
		m := tMsg()
		m.ClientTimeout = 30
		f.Add(mustEncode(f, m, k), uint8(mode))
	}
	f.Add([]byte("U2FsdGVkX1AAAA"), uint8(0))
	mac, _ := NewMAC(SHA256, tHMAC)
	f.Fuzz(func(t *testing.T, pkt []byte, mode uint8) {
		_ = Precheck(pkt)
		_ = mac.Verify(pkt)
		body, _, ok := Split(pkt, SHA256)
		if !ok {
			body = pkt
		}
		m, err := Open(body, tKey, Mode(mode%6))
		if err == nil {
			checkMessage(t, m)
		}
	})
}

// FuzzPlaintext encrypts arbitrary plaintexts properly, so the fuzzer
// reaches the digest check and the field parser.
func FuzzPlaintext(f *testing.F) {
	u, acc := b64("alice"), b64("192.0.2.7,tcp/22")
	for _, s := range []string{
		"1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc,
		"1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc + ":" + b64("x") + ":30",
		"1234567890123456:" + u + ":1700000000:3.0.0:4:" + acc + ":" + b64("10.0.0.1,22") + ":30",
		"1234567890123456:" + u + ":1700000000:3.0.0:0:" + b64("192.0.2.7,reboot"),
	} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, plain string, digest bool) {
		if digest {
			plain = withDigest(plain)
		}
		m, err := Open(encryptPlain(t, plain), tKey, CBC)
		if err == nil {
			checkMessage(t, m)
		}
	})
}

func checkMessage(t *testing.T, m *Message) {
	t.Helper()
	if len(m.Random) != RandomLen || !allDigits(m.Random) {
		t.Fatalf("random %q", m.Random)
	}
	if err := validUser(m.User); err != nil {
		t.Fatal(err)
	}
	if m.Type == CommandMsg {
		if err := validCommand(m.Access); err != nil {
			t.Fatal(err)
		}
	} else if _, err := ParseAccess(m.Access); err != nil {
		t.Fatal(err)
	}
	if m.Type.IsNAT() != (m.NATAccess != "") || (!m.Type.HasTimeout() && m.ClientTimeout != 0) {
		t.Fatalf("fields do not fit type %s: %+v", m.Type, m)
	}
	if m.ClientTimeout < 0 || m.ClientTimeout > MaxClientTimeout || m.Timestamp < 0 {
		t.Fatalf("%+v", m)
	}
}
