package spa

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

var (
	tKey  = []byte("0123456789abcdef0123456789abcdef")
	tHMAC = bytes.Repeat([]byte("k"), MaxHMACKeyLen)
)

func tMsg() Message {
	return Message{User: "alice", Timestamp: 1700000000, Type: AccessMsg, Access: "192.0.2.7,tcp/22"}
}

func mustEncode(t testing.TB, m Message, k Keys) []byte {
	t.Helper()
	e, err := Encode(m, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.Packet
}

// Every mode, HMAC and digest round-trips, and the HMAC refuses a packet
// changed anywhere.
func TestRoundTrip(t *testing.T) {
	for mode := CBC; mode <= Legacy; mode++ {
		for h := SHA256; h <= SHA3_512; h++ {
			k := Keys{Key: tKey[:5+int(h)*3], Mode: mode, HMACKey: tHMAC[:1+int(h)*20], HMAC: h}
			m := tMsg()
			m.Digest = SHA3_512 - h
			m.ClientTimeout = int(h) * 10
			m.Access = "2001:db8::7,tcp/22,udp/53"
			pkt := mustEncode(t, m, k)
			if err := Precheck(pkt); err != nil {
				t.Fatalf("%s/%s: Precheck: %v", mode, h, err)
			}
			mac, err := NewMAC(h, k.HMACKey)
			if err != nil {
				t.Fatal(err)
			}
			if !mac.Verify(pkt) {
				t.Fatalf("%s/%s: HMAC does not verify", mode, h)
			}
			body, _, _ := Split(pkt, h)
			got, err := Open(body, k.Key, mode)
			if err != nil {
				t.Fatalf("%s/%s: Open: %v", mode, h, err)
			}
			want := m
			want.Random, want.Version = got.Random, Version
			if m.ClientTimeout > 0 {
				want.Type = ClientTimeoutAccessMsg
			}
			if *got != want {
				t.Errorf("%s/%s: got %+v\nwant %+v", mode, h, *got, want)
			}
			for i := range pkt {
				bad := append([]byte(nil), pkt...)
				bad[i] = "AB"[i%2&int(bad[i]&1)]
				if bad[i] == pkt[i] {
					bad[i] = 'z'
				}
				if mac.Verify(bad) {
					t.Fatalf("%s/%s: HMAC verifies a packet changed at byte %d", mode, h, i)
				}
			}
		}
	}
}

func TestWrongKeyAndMode(t *testing.T) {
	k := Keys{Key: tKey, HMACKey: tHMAC}
	body, _, _ := Split(mustEncode(t, tMsg(), k), SHA256)
	if _, err := Open(body, []byte("another key"), CBC); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("wrong key: %v, want ErrUndecryptable", err)
	}
	for _, mode := range []Mode{ECB, CFB, OFB, CTR} {
		if _, err := Open(body, tKey, mode); !errors.Is(err, ErrUndecryptable) {
			t.Errorf("CBC packet opened as %s: %v, want ErrUndecryptable", mode, err)
		}
	}
	if _, err := Open(body[:len(body)-3], tKey, CBC); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := Open([]byte("!!!!"), tKey, CBC); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("not base64: %v", err)
	}
}

func TestPrecheck(t *testing.T) {
	good := mustEncode(t, tMsg(), Keys{Key: tKey, HMACKey: tHMAC})
	if err := Precheck(good); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string][]byte{
		"short":      good[:MinPacketLen-1],
		"long":       bytes.Repeat([]byte("A"), MaxPacketLen+1),
		"salted":     append([]byte("U2FsdGVkX1"), good...),
		"gpg":        append([]byte("hQ"), bytes.Repeat([]byte("A"), 400)...),
		"newline":    append(append([]byte(nil), good...), '\n'),
		"not base64": bytes.Replace(good, good[20:21], []byte("-"), 1),
		"empty":      nil,
	} {
		if err := Precheck(p); !errors.Is(err, ErrNotSPA) {
			t.Errorf("%s: %v, want ErrNotSPA", name, err)
		}
	}
}

// encryptPlain makes a packet body around an arbitrary plaintext, for
// testing the field parser past the digest check.
func encryptPlain(t *testing.T, plain string) []byte {
	t.Helper()
	return encryptRaw(t, []byte(plain))
}

func encryptRaw(t *testing.T, plain []byte) []byte {
	t.Helper()
	raw := append([]byte("Salted__12345678"), pad(append([]byte(nil), plain...))...)
	key, iv := deriveKeyIV(tKey, raw[8:16], CBC)
	b := mustAES(t, key[:])
	crypt(b, CBC, iv[:], raw[16:], raw[16:], false)
	var enc bytes.Buffer
	enc.WriteString(b64(string(raw)))
	return enc.Bytes()[len(b64Salted):]
}

func withDigest(fields string) string {
	return fields + ":" + string(digestB64(SHA256, []byte(fields)))
}

func TestParseErrors(t *testing.T) {
	u := b64("alice")
	acc := b64("192.0.2.7,tcp/22")
	for _, c := range []struct {
		name  string
		plain string
		want  error
	}{
		{"ok", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc), nil},
		{"ok server auth", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc + ":" + b64("crypt,x")), nil},
		{"ok timeout", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc + ":30"), nil},
		{"ok timeout server auth", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc + ":" + b64("x") + ":30"), nil},
		{"ok NAT", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:2:" + acc + ":" + b64("192.168.1.2,22")), nil},
		{"ok command", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:0:" + b64("192.0.2.7,touch /tmp/x")), nil},
		{"random not digits", withDigest("12345678901234x6:" + u + ":1700000000:3.0.0:1:" + acc), ErrUndecryptable},
		{"random short", withDigest("123456789012345:" + u + ":1700000000:3.0.0:1:" + acc), ErrUndecryptable},
		{"bad digest", "1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc + ":" + strings.Repeat("A", 43), ErrDigest},
		{"digest length", "1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc + ":" + strings.Repeat("A", 40), ErrMalformed},
		{"too few fields", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1"), ErrMalformed},
		{"too many fields", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + acc + ":" + u + ":" + u), ErrMalformed},
		{"timeout missing", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc), ErrMalformed},
		{"timeout not digits", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc + ":3x"), ErrMalformed},
		{"timeout too big", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:3:" + acc + ":65537"), ErrMalformed},
		{"bad type", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:7:" + acc), ErrMalformed},
		{"bad user", withDigest("1234567890123456:" + b64("a:b") + ":1700000000:3.0.0:1:" + acc), ErrMalformed},
		{"user not base64", withDigest("1234567890123456:a!b:1700000000:3.0.0:1:" + acc), ErrMalformed},
		{"timestamp", withDigest("1234567890123456:" + u + ":-5:3.0.0:1:" + acc), ErrMalformed},
		{"version too long", withDigest("1234567890123456:" + u + ":1700000000:3.0.0.0.0:1:" + acc), ErrMalformed},
		{"no port", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + b64("192.0.2.7")), ErrMalformed},
		{"port 0", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + b64("192.0.2.7,tcp/0")), ErrMalformed},
		{"bad proto", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + b64("192.0.2.7,sctp/9")), ErrMalformed},
		{"bad addr", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:1:" + b64("192.0.2,tcp/22")), ErrMalformed},
		{"bad NAT", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:2:" + acc + ":" + b64("host")), ErrMalformed},
		{"bad command", withDigest("1234567890123456:" + u + ":1700000000:3.0.0:0:" + b64("192.0.2.7")), ErrMalformed},
	} {
		_, err := Open(encryptPlain(t, c.plain), tKey, CBC)
		if !errors.Is(err, c.want) && (err != nil || c.want != nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Open(encryptRaw(t, append([]byte(withDigest("1234567890123456:"+u+":1700000000:3.0.0:1:"+acc)), 0)), tKey, CBC); !errors.Is(err, ErrMalformed) {
		t.Errorf("NUL byte: %v", err)
	}
}

func TestParseAccess(t *testing.T) {
	r, err := ParseAccess("0.0.0.0,tcp/22,udp/53,icmp/8")
	if err != nil || !r.Addr.IsUnspecified() || len(r.Ports) != 2 || len(r.Other) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseAccess("::ffff:192.0.2.1,tcp/1")
	if err != nil || r.Addr.String() != "192.0.2.1" {
		t.Fatalf("mapped address not unmapped: %+v %v", r, err)
	}
	for _, s := range []string{"", "1.2.3.4", "1.2.3.4,", "1.2.3.4,tcp/", "1.2.3.4,tcp/65536", "1.2.3.4,TCP/22", "fe80::1%eth0,tcp/22", "1.2.3.4,tcp/22,"} {
		if _, err := ParseAccess(s); err == nil {
			t.Errorf("ParseAccess(%q) accepted", s)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	k := Keys{Key: tKey, HMACKey: tHMAC}
	for name, f := range map[string]func(*Message, *Keys){
		"no key":         func(m *Message, k *Keys) { k.Key = nil },
		"long key":       func(m *Message, k *Keys) { k.Key = make([]byte, 33) },
		"long HMAC key":  func(m *Message, k *Keys) { k.HMACKey = make([]byte, MaxHMACKeyLen+1) },
		"bad user":       func(m *Message, k *Keys) { m.User = "a,b" },
		"no user":        func(m *Message, k *Keys) { m.User = "" },
		"bad access":     func(m *Message, k *Keys) { m.Access = "host,tcp/22" },
		"timeout":        func(m *Message, k *Keys) { m.ClientTimeout = MaxClientTimeout + 1 },
		"NAT w/o string": func(m *Message, k *Keys) { m.Type = NATAccessMsg },
		"huge access":    func(m *Message, k *Keys) { m.Access = "1.2.3.4" + strings.Repeat(",tcp/22", 60) },
	} {
		m := tMsg()
		kk := k
		f(&m, &kk)
		if _, err := Encode(m, kk, nil); err == nil {
			t.Errorf("%s: Encode accepted", name)
		}
	}
}

// A flood of garbage must not allocate: Verify is the whole cost of a
// packet that does not authenticate.
func TestVerifyDoesNotAllocate(t *testing.T) {
	for h := SHA256; h <= SHA3_512; h++ {
		mac, err := NewMAC(h, tHMAC)
		if err != nil {
			t.Fatal(err)
		}
		pkt := make([]byte, 300)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range pkt {
			pkt[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[r.IntN(64)]
		}
		if n := testing.AllocsPerRun(100, func() { mac.Verify(pkt) }); n != 0 {
			t.Errorf("%s: Verify allocates %.1f times per packet", h, n)
		}
	}
}
