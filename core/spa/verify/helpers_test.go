package verify

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/spa/replay"
)

var (
	now     = time.Unix(1800000000, 0)
	key     = []byte("0123456789abcdef0123456789abcdef")
	hmacKey = []byte("an HMAC key of some length, 48 bytes long......")
	b64     = base64.StdEncoding.EncodeToString
	client4 = netip.MustParseAddr("198.51.100.7")
	server4 = netip.MustParseAddr("192.0.2.1")
)

// conf builds access.conf text; %K and %H stand for the test keys.
func conf(t testing.TB, text string) []*access.Stanza {
	t.Helper()
	text = strings.NewReplacer("%K", b64(key), "%H", b64(hmacKey)).Replace(text)
	c, err := access.Parse("access.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c.Stanzas
}

func newVerifier(t testing.TB, stanzas []*access.Stanza) *Verifier {
	t.Helper()
	v, err := New(stanzas, replay.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// packet encodes a message with the test keys at now.
func packet(t testing.TB, m spa.Message) []byte {
	t.Helper()
	return packetWith(t, m, spa.Keys{Key: key, HMACKey: hmacKey})
}

func packetWith(t testing.TB, m spa.Message, k spa.Keys) []byte {
	t.Helper()
	if m.User == "" {
		m.User = "alice"
	}
	if m.Timestamp == 0 {
		m.Timestamp = now.Unix()
	}
	if m.Type == 0 && m.Access != "" && !strings.Contains(m.Access, "/") {
		m.Type = spa.CommandMsg
	} else if m.Type == 0 {
		m.Type = spa.AccessMsg
	}
	e, err := spa.Encode(m, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.Packet
}

// seal is an independent, minimal implementation of libfko's framing
// (CBC, SHA-256 HMAC) around any plaintext, for packets Encode would
// refuse to make: bad digests and malformed fields.
func seal(t testing.TB, plain string) []byte {
	t.Helper()
	salt := []byte("saltsalt")
	var kiv []byte
	var d []byte
	for len(kiv) < 48 {
		h := md5.New()
		h.Write(d)
		h.Write(key)
		h.Write(salt)
		d = h.Sum(nil)
		kiv = append(kiv, d...)
	}
	b, _ := aes.NewCipher(kiv[:32])
	p := []byte(plain)
	n := 16 - len(p)%16
	for i := 0; i < n; i++ {
		p = append(p, byte(n))
	}
	cipher.NewCBCEncrypter(b, kiv[32:48]).CryptBlocks(p, p)
	enc := base64.RawStdEncoding.EncodeToString(append(append([]byte("Salted__"), salt...), p...))
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(enc))
	return []byte(enc[10:] + base64.RawStdEncoding.EncodeToString(m.Sum(nil)))
}

// fields returns the plaintext for the given fields with a correct
// SHA-256 digest appended.
func fields(f ...string) string {
	s := strings.Join(f, ":")
	sum := sha256.Sum256([]byte(s))
	return s + ":" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func u64(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }

func ts(d time.Duration) string { return fmt.Sprint(now.Add(d).Unix()) }
