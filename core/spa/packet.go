package spa

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
)

// Packet length limits: fwknopd's MIN_SPA_DATA_SIZE and MAX_SPA_PACKET_LEN.
const (
	MinPacketLen = 140
	MaxPacketLen = 1500
	// gpgMinLen is MIN_GNUPG_MSG_SIZE: fwknopd drops longer packets that
	// start with GnuPG's base64 prefix "hQ".
	gpgMinLen = 400
)

// Precheck is fwknopd's preprocess_spa_data: it reports whether pkt (a
// UDP payload) can be an SPA packet at all, without allocating. It
// refuses a packet that starts with "U2FsdGVkX1" (libfko strips that
// prefix, so an attacker who adds it to a seen packet would get past a
// replay check keyed on the packet's text) and one over 400 bytes that
// starts with GnuPG's "hQ".
func Precheck(pkt []byte) error {
	if len(pkt) < MinPacketLen || len(pkt) > MaxPacketLen {
		return ErrNotSPA
	}
	if bytes.HasPrefix(pkt, b64Salted) || (len(pkt) > gpgMinLen && pkt[0] == 'h' && pkt[1] == 'Q') {
		return ErrNotSPA
	}
	for _, c := range pkt {
		if !isB64(c) {
			return ErrNotSPA
		}
	}
	return nil
}

func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
}

// Keys are what a stanza (or a client) encrypts and authenticates with.
type Keys struct {
	// Key is the Rijndael key: a passphrase (KEY) or the decoded
	// KEY_BASE64, 1 to 32 bytes.
	Key  []byte
	Mode Mode
	// HMACKey is the decoded HMAC_KEY_BASE64 or the HMAC_KEY text; nil
	// makes a packet without an HMAC (fwknop without --use-hmac).
	HMACKey []byte
	HMAC    HashType
}

func (k Keys) check() error {
	if len(k.Key) == 0 || len(k.Key) > maxKeyLen {
		return fmt.Errorf("Rijndael key of %d bytes: want 1-%d", len(k.Key), maxKeyLen)
	}
	if k.Mode > Legacy {
		return fmt.Errorf("unknown mode %d", k.Mode)
	}
	if k.HMACKey != nil && (len(k.HMACKey) == 0 || len(k.HMACKey) > MaxHMACKeyLen) {
		return fmt.Errorf("HMAC key of %d bytes: want 1-%d", len(k.HMACKey), MaxHMACKeyLen)
	}
	return nil
}

// Encoded is a packet with the intermediate values fwknop -v prints.
type Encoded struct {
	Fields string // the encoded fields ("Encoded Data")
	Digest string // their digest, base64 ("SPA Data Digest")
	HMAC   string // base64, "" without an HMAC key
	Packet []byte // the UDP payload ("Final SPA Data")
}

// Encode builds the packet for m as libfko's fko_spa_data_final does.
// Empty Random and Version are filled in (random digits, "3.0.0"); rnd
// supplies randomness (crypto/rand when nil). m.Digest picks the digest.
func Encode(m Message, k Keys, rnd io.Reader) (*Encoded, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := k.check(); err != nil {
		return nil, fmt.Errorf("spa.Encode: %w", err)
	}
	if m.Version == "" {
		m.Version = Version
	}
	if m.Random == "" {
		var b [RandomLen]byte
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("spa.Encode: random value: %w", err)
		}
		for i := range b {
			b[i] = '0' + b[i]%10
		}
		if b[0] == '0' {
			b[0] = '1'
		}
		m.Random = string(b[:])
	}
	fields, err := m.encodeFields()
	if err != nil {
		return nil, fmt.Errorf("spa.Encode: %w", err)
	}
	e := &Encoded{Fields: fields, Digest: string(digestB64(m.Digest, []byte(fields)))}
	plain := pad([]byte(e.Fields + ":" + e.Digest))

	raw := make([]byte, headerLen+len(plain))
	copy(raw, saltedMagic)
	if _, err := io.ReadFull(rnd, raw[8:headerLen]); err != nil {
		return nil, fmt.Errorf("spa.Encode: salt: %w", err)
	}
	key := legacyKey(k.Key, k.Mode)
	ak, iv := deriveKeyIV(key, raw[8:headerLen], k.Mode)
	b, err := aes.NewCipher(ak[:])
	if err != nil {
		return nil, fmt.Errorf("spa.Encode: %w", err)
	}
	crypt(b, k.Mode, iv[:], raw[headerLen:], plain, false)

	enc := make([]byte, base64.RawStdEncoding.EncodedLen(len(raw)))
	base64.RawStdEncoding.Encode(enc, raw)
	pkt := append([]byte(nil), enc[len(b64Salted):]...)
	if k.HMACKey != nil {
		t := tag(k.HMAC, k.HMACKey, enc)
		e.HMAC = string(t)
		pkt = append(pkt, t...)
	}
	if len(pkt) > MaxPacketLen {
		return nil, fmt.Errorf("spa.Encode: packet of %d bytes: fwknopd takes at most %d", len(pkt), MaxPacketLen)
	}
	e.Packet = pkt
	return e, nil
}

// Open decrypts and parses an authenticated packet's encrypted part (the
// packet without its HMAC tag; see Split), as libfko's _rijndael_decrypt
// and fko_decode_spa_data do. key is the stanza's Rijndael key (Legacy
// mode cuts it to 16 bytes). Errors wrap ErrUndecryptable, ErrDigest or
// ErrMalformed.
func Open(body []byte, key []byte, mode Mode) (*Message, error) {
	if len(key) == 0 || len(key) > maxKeyLen || mode > Legacy {
		return nil, fmt.Errorf("spa.Open: key of %d bytes, mode %s: %w", len(key), mode, ErrUndecryptable)
	}
	if len(body) > MaxPacketLen {
		return nil, ErrUndecryptable
	}
	var text [MaxPacketLen + 16]byte
	n := copy(text[:], b64Salted)
	n += copy(text[n:], body)
	raw := make([]byte, base64.RawStdEncoding.DecodedLen(n))
	got, err := base64.RawStdEncoding.Decode(raw, text[:n])
	if err != nil || got < headerLen+blockSize || (got-headerLen)%blockSize != 0 {
		return nil, ErrUndecryptable
	}
	raw = raw[:got]
	key = legacyKey(key, mode)
	ak, iv := deriveKeyIV(key, raw[8:headerLen], mode)
	b, err := aes.NewCipher(ak[:])
	if err != nil {
		return nil, ErrUndecryptable
	}
	ct := raw[headerLen:]
	crypt(b, mode, iv[:], ct, ct, true)
	plain, ok := unpad(ct)
	if !ok {
		return nil, ErrUndecryptable
	}
	return parsePlaintext(plain)
}
