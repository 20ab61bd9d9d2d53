package spa_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/internal/fwknoptest"
)

// Keys shared by the interop tests: a 32-byte Rijndael key and a 64-byte
// HMAC key, as fwknop --key-gen makes them.
var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	testHMAC = bytes.Repeat([]byte("hmac-key"), 8)
)

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// fwknopCase is one way of running Debian's fwknop client.
type fwknopCase struct {
	name   string
	args   []string
	keys   spa.Keys
	digest spa.HashType
}

func fwknopCases() []fwknopCase {
	base := []string{"-D", "127.0.0.1", "-a", "10.213.7.2", "-A", "tcp/2222"}
	b64keys := []string{"--key-base64-rijndael", b64std(testKey), "--key-base64-hmac", b64std(testHMAC), "--use-hmac"}
	var cs []fwknopCase
	// Every mode with every HMAC digest and message digest, rotated.
	modes := []spa.Mode{spa.CBC, spa.ECB, spa.CFB, spa.OFB, spa.CTR}
	hmacs := []spa.HashType{spa.SHA256, spa.MD5, spa.SHA1, spa.SHA384, spa.SHA512, spa.SHA3_256, spa.SHA3_512}
	digests := []spa.HashType{spa.SHA256, spa.MD5, spa.SHA1, spa.SHA384, spa.SHA512, spa.SHA3_256, spa.SHA3_512}
	for i, h := range hmacs {
		m := modes[i%len(modes)]
		d := digests[(i+3)%len(digests)]
		args := append(append([]string{}, base...), b64keys...)
		args = append(args, "-M", strings.ToLower(m.String()), "--hmac-digest-type", h.String(), "-m", d.String())
		cs = append(cs, fwknopCase{fmt.Sprintf("%s-hmac-%s-digest-%s", m, h, d), args,
			spa.Keys{Key: testKey, Mode: m, HMACKey: testHMAC, HMAC: h}, d})
	}
	for _, m := range modes {
		args := append(append(append([]string{}, base...), b64keys...), "-M", strings.ToLower(m.String()))
		cs = append(cs, fwknopCase{"mode-" + m.String(), args, spa.Keys{Key: testKey, Mode: m, HMACKey: testHMAC}, spa.SHA256})
	}
	cs = append(cs,
		fwknopCase{"source-timeout-ports", []string{"-D", "127.0.0.1", "-s", "-A", "tcp/22,udp/53,tcp/443", "-f", "120",
			"--key-base64-rijndael", b64std(testKey), "--key-base64-hmac", b64std(testHMAC), "--use-hmac"},
			spa.Keys{Key: testKey, HMACKey: testHMAC}, spa.SHA256},
		fwknopCase{"passphrase", append(append([]string{}, base...), "--key-rijndael", "correct horse", "--key-base64-hmac", b64std(testHMAC), "--use-hmac"),
			spa.Keys{Key: []byte("correct horse"), HMACKey: testHMAC}, spa.SHA256},
		fwknopCase{"time-offset", append(append(append([]string{}, base...), b64keys...), "--time-offset-minus", "300"),
			spa.Keys{Key: testKey, HMACKey: testHMAC}, spa.SHA256},
		// fwknop refuses legacy mode with an HMAC; these packets have none.
		fwknopCase{"legacy-short-key-no-hmac", append(append([]string{}, base...), "--key-rijndael", "secret", "-M", "legacy"),
			spa.Keys{Key: []byte("secret"), Mode: spa.Legacy}, spa.SHA256},
		fwknopCase{"legacy-long-key-no-hmac", append(append([]string{}, base...), "--key-base64-rijndael", b64std(testKey), "-M", "legacy"),
			spa.Keys{Key: testKey, Mode: spa.Legacy}, spa.SHA256},
		fwknopCase{"cbc-no-hmac", append(append([]string{}, base...), "--key-base64-rijndael", b64std(testKey)),
			spa.Keys{Key: testKey}, spa.SHA256},
	)
	return cs
}

// Packets made by Debian's fwknop 2.6.10 at test time: the HMAC verifies
// (and fails for a changed packet), the packet decrypts, and every field
// is what fwknop printed. Then Encode, given the same fields and the salt
// fwknop drew, must produce fwknop's packet byte for byte.
func TestFwknopClientPackets(t *testing.T) {
	for _, c := range fwknopCases() {
		t.Run(c.name, func(t *testing.T) {
			p := fwknoptest.MakePacket(t, c.args...)
			pkt := p.Data
			if err := spa.Precheck(pkt); err != nil {
				t.Fatalf("Precheck: %v (%q)", err, pkt)
			}
			body := pkt
			if c.keys.HMACKey != nil {
				mac, err := spa.NewMAC(c.keys.HMAC, c.keys.HMACKey)
				if err != nil {
					t.Fatal(err)
				}
				if !mac.Verify(pkt) {
					t.Fatalf("HMAC does not verify:\n%s", p.Output)
				}
				if got := string(pkt[len(pkt)-c.keys.HMAC.B64Len():]); got != p.Fields["HMAC"] {
					t.Errorf("HMAC tag %q, fwknop printed %q", got, p.Fields["HMAC"])
				}
				bad := append([]byte(nil), pkt...)
				bad[len(bad)/2] ^= 1 // still base64: flips the low bit of a letter or digit
				if mac.Verify(bad) {
					t.Errorf("HMAC verifies a changed packet")
				}
				body, _, _ = spa.Split(pkt, c.keys.HMAC)
			}
			m, err := spa.Open(body, c.keys.Key, c.keys.Mode)
			if err != nil {
				t.Fatalf("Open: %v\n%s", err, p.Output)
			}
			f := p.Fields
			check := func(name, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, fwknop printed %q", name, got, want)
				}
			}
			check("Random", m.Random, f["Random Value"])
			check("User", m.User, f["Username"])
			check("Timestamp", strconv.FormatInt(m.Timestamp, 10), f["Timestamp"])
			check("Version", m.Version, f["FKO Version"])
			check("Type", strconv.Itoa(int(m.Type)), strings.Fields(f["Message Type"])[0])
			check("Access", m.Access, f["Message String"])
			check("ClientTimeout", strconv.Itoa(m.ClientTimeout), f["Client Timeout"])
			check("Digest", "("+strings.ToUpper(m.Digest.String())+")", strings.Fields(f["Digest Type"])[1])
			if m.User != fwknoptest.User {
				t.Errorf("user %q, want %q", m.User, fwknoptest.User)
			}
			if _, err := spa.ParseAccess(m.Access); err != nil {
				t.Error(err)
			}

			// Our encoder with fwknop's random value, timestamp and salt.
			raw, err := base64.RawStdEncoding.DecodeString("U2FsdGVkX1" + string(body))
			if err != nil {
				t.Fatal(err)
			}
			m.Digest = c.digest
			e, err := spa.Encode(*m, c.keys, bytes.NewReader(raw[8:16]))
			if err != nil {
				t.Fatal(err)
			}
			check("Encoded Data", e.Fields, f["Encoded Data"])
			check("SPA Data Digest", e.Digest, f["SPA Data Digest"])
			if !bytes.Equal(e.Packet, pkt) {
				t.Errorf("Encode made\n%s\nfwknop made\n%s", e.Packet, pkt)
			}
		})
	}
}

// Packets made by Encode are accepted by Debian's fwknopd 2.6.10: one
// stanza per case (its own source address, keys, mode and HMAC digest),
// fwknopd replaying a pcap of the packets in test mode inside a namespace.
func TestFwknopdAcceptsEncodedPackets(t *testing.T) {
	var access strings.Builder
	var dgrams []fwknoptest.Datagram
	dst := netip.MustParseAddr("10.9.1.1")
	n := 0
	add := func(k spa.Keys, m spa.Message, extra string) {
		n++
		src := netip.AddrFrom4([4]byte{10, 9, 0, byte(n)})
		// Each stanza its own keys, so only its packet authenticates.
		k.Key = append(append([]byte(nil), k.Key...), byte('a'+n))
		k.HMACKey = append(append([]byte(nil), k.HMACKey...), byte('A'+n))
		fmt.Fprintf(&access, "SOURCE %s\nOPEN_PORTS tcp/22,udp/53\nKEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nHMAC_DIGEST_TYPE %s\nENCRYPTION_MODE %s\n%s\n",
			src, b64std(k.Key), b64std(k.HMACKey), k.HMAC, k.Mode, extra)
		e, err := spa.Encode(m, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		dgrams = append(dgrams, fwknoptest.Datagram{Src: src, Dst: dst, Payload: e.Packet})
	}
	now := time.Now().Unix()
	msg := spa.Message{User: "alice", Timestamp: now, Type: spa.AccessMsg, Access: "10.9.0.200,tcp/22"}
	key := testKey[:31]
	for i, h := range []spa.HashType{spa.SHA256, spa.MD5, spa.SHA1, spa.SHA384, spa.SHA512, spa.SHA3_256, spa.SHA3_512} {
		for j, mode := range []spa.Mode{spa.CBC, spa.ECB, spa.CFB, spa.OFB, spa.CTR} {
			m := msg
			m.Digest = []spa.HashType{spa.SHA256, spa.MD5, spa.SHA1, spa.SHA384, spa.SHA512, spa.SHA3_256, spa.SHA3_512}[(i+j)%7]
			add(spa.Keys{Key: key, Mode: mode, HMACKey: testHMAC, HMAC: h}, m, "")
		}
	}
	m := msg
	m.Access, m.ClientTimeout = "0.0.0.0,tcp/22,udp/53", 77
	add(spa.Keys{Key: key, HMACKey: testHMAC}, m, "MAX_FW_TIMEOUT 100\n")
	out := fwknoptest.Offline(t, access.String(), dgrams)
	for i, d := range dgrams {
		if !fwknoptest.Accepted(out, d.Src.String(), i+1) {
			t.Errorf("fwknopd did not accept packet %d from %s with stanza #%d", i+1, d.Src, i+1)
		}
	}
	if t.Failed() {
		t.Logf("access.conf:\n%s\nfwknopd:\n%s", access.String(), out)
	}
}
