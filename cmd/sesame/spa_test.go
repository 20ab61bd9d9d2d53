package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/spa/replay"
	"github.com/sesame-knock/sesame/core/spa/verify"
)

var (
	spaKey  = []byte("0123456789abcdef0123456789abcdef")
	spaHMAC = bytes.Repeat([]byte("hmackey!"), 8)
	keyArgs = []string{"--key-base64-rijndael", base64.StdEncoding.EncodeToString(spaKey),
		"--key-base64-hmac", base64.StdEncoding.EncodeToString(spaHMAC), "--use-hmac"}
)

// runSesame runs the command line in-process with HOME set to a fresh
// directory (so no ~/.fwknoprc is read unless the test writes one).
func runSesame(t *testing.T, home string, args ...string) (string, string, int) {
	t.Helper()
	if home == "" {
		home = t.TempDir()
	}
	t.Setenv("HOME", home)
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// verifier accepts packets made with the test keys from any source.
func spaVerifier(t *testing.T, extra string) *verify.Verifier {
	t.Helper()
	c, err := access.Parse("access.conf", []byte("SOURCE ANY\nKEY_BASE64 "+base64.StdEncoding.EncodeToString(spaKey)+
		"\nHMAC_KEY_BASE64 "+base64.StdEncoding.EncodeToString(spaHMAC)+"\n"+extra))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(c.Stanzas, replay.New(), verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readPacket(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("-B file does not end in a newline, as fwknop's does")
	}
	return bytes.TrimSpace(b)
}

func TestParseTimeOffset(t *testing.T) {
	for in, want := range map[string]int{
		"300": 300, "300sec": 300, "300s": 300, "5m": 300, "5min": 300, "2h": 7200, "2hours": 7200,
		"1d": 86400, "3days": 3 * 86400, "65536": 65536, "1s2": 12, // fwknop skips other letters
	} {
		got, err := parseTimeOffset(in)
		if err != nil || got != want {
			t.Errorf("parseTimeOffset(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "min", "65537", "99999999999999999999"} {
		if _, err := parseTimeOffset(in); err == nil {
			t.Errorf("parseTimeOffset(%q) accepted", in)
		}
	}
}

// -T builds the packet, prints fwknop's field dump, writes -B, sends
// nothing; the packet is what was asked for and the server accepts it.
func TestSPATestMode(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pkt")
	args := append([]string{"spa", "-T", "-A", "tcp/22,udp/53", "-a", "2001:db8::7", "-f", "90", "-U", "carol",
		"-M", "ofb", "--hmac-digest-type", "sha3_256", "-m", "sha384", "--time-offset-minus", "1m", "-B", file}, keyArgs...)
	before := time.Now()
	out, errs, code := runSesame(t, "", args...)
	after := time.Now()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"Username: carol", "Message String: 2001:db8::7,tcp/22,udp/53", "Client Timeout: 90",
		"Message Type: 3 (client timeout access msg)", "Encryption Mode: OFB", "HMAC Type: sha3_256", "Digest Type: sha384", "not sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	pkt := readPacket(t, file)
	v := spaVerifier(t, "HMAC_DIGEST_TYPE sha3_256\nENCRYPTION_MODE OFB\n")
	now := time.Now()
	got := v.Verify(pkt, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1"), now)
	if got.Reason != verify.Accepted {
		t.Fatalf("%s %s", got.Reason, got.Detail)
	}
	r := got.Request
	if r.Allow.String() != "2001:db8::7" || r.User != "carol" || r.Timeout != 90*time.Second || len(r.Ports) != 2 {
		t.Errorf("request %+v", r)
	}
	if sent := r.Sent.Unix(); sent < before.Unix()-60 || sent > after.Unix()-60 {
		t.Errorf("--time-offset-minus 1m: timestamp %d, want a minute before the run (%d-%d)", sent, before.Unix()-60, after.Unix()-60)
	}
	if got.Message.Digest != spa.SHA384 {
		t.Errorf("digest %s", got.Message.Digest)
	}
	// -b appends.
	if _, errs, code := runSesame(t, "", append([]string{"spa", "-T", "-A", "tcp/22", "-s", "-B", file, "-b"}, keyArgs...)...); code != 0 {
		t.Fatal(errs)
	}
	b, _ := os.ReadFile(file)
	if n := bytes.Count(b, []byte("\n")); n != 2 {
		t.Errorf("-b: %d packets in the file, want 2", n)
	}
}

// The rc file's [default], then -n's stanza, then the command line.
func TestSPARCFile(t *testing.T) {
	home := t.TempDir()
	k := base64.StdEncoding.EncodeToString(spaKey)
	h := base64.StdEncoding.EncodeToString(spaHMAC)
	rc := `# fwknop rc
[default]
KEY_BASE64   ` + k + `
HMAC_KEY_BASE64: ` + h + ` # a comment
ACCESS tcp/1
SPOOF_USER dflt
FW_TIMEOUT 10

[MyServer]
ACCESS tcp/2 ;comment
ALLOW_IP source
TIME_OFFSET -2m
SPA_SERVER 192.0.2.1

[broken]
just-a-name
`
	if err := os.WriteFile(filepath.Join(home, ".fwknoprc"), []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	v := spaVerifier(t, "")
	build := func(args ...string) *verify.Request {
		t.Helper()
		file := filepath.Join(t.TempDir(), "pkt")
		_, errs, code := runSesame(t, home, append([]string{"spa", "-T", "-B", file}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		got := v.Verify(readPacket(t, file), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1"), time.Now())
		if got.Reason != verify.Accepted {
			t.Fatalf("%v: %s %s", args, got.Reason, got.Detail)
		}
		return got.Request
	}
	r := build("-a", "198.51.100.9")
	if r.Ports[0].Num != 1 || r.User != "dflt" || r.Timeout != 10*time.Second || r.Allow.String() != "198.51.100.9" {
		t.Errorf("[default]: %+v", r)
	}
	r = build("-n", "myserver") // stanza names are case-insensitive
	if r.Ports[0].Num != 2 || r.Allow.String() != "198.51.100.1" || time.Since(r.Sent) < 100*time.Second {
		t.Errorf("[MyServer]: %+v", r)
	}
	r = build("-n", "MyServer", "-A", "tcp/3", "-a", "198.51.100.5", "-f", "20")
	if r.Ports[0].Num != 3 || r.Allow.String() != "198.51.100.5" || r.Timeout != 20*time.Second {
		t.Errorf("flags over [MyServer]: %+v", r)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "nope", "-s"}, "named configuration stanza [nope] was not found"},
		{[]string{"-n", "broken", "-s"}, ".fwknoprc:16: \"just-a-name\": want NAME VALUE"},
		{[]string{"--rc-file", filepath.Join(home, "missing"), "-s"}, "no such file"},
		{[]string{"--no-rc-file", "-n", "MyServer"}, "cannot go with --no-rc-file"},
	} {
		_, errs, code := runSesame(t, home, append([]string{"spa", "-T"}, c.args...)...)
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q; want %q", c.args, code, errs, c.want)
		}
	}
	// With --no-rc-file nothing comes from the file: no key.
	if _, errs, code := runSesame(t, home, "spa", "-T", "--no-rc-file", "-A", "tcp/22", "-s"); code != 1 || !strings.Contains(errs, "no Rijndael key") {
		t.Errorf("--no-rc-file: %d %q", code, errs)
	}
}

func TestSPARCRefusals(t *testing.T) {
	for line, want := range map[string]string{
		"ALLOW_IP resolve":       "not supported",
		"RESOLVE_IP_HTTPS Y":     "not supported",
		"USE_GPG Y":              "GnuPG",
		"NAT_ACCESS 10.0.0.1,22": "NAT",
		"SPA_SERVER_PROTO tcp":   "only udp",
		"KEY_BASE64 !!!":         "not base64",
		"BOGUS 1":                "unknown variable BOGUS",
		"FW_TIMEOUT 99999":       "FW_TIMEOUT",
	} {
		home := t.TempDir()
		os.WriteFile(filepath.Join(home, ".fwknoprc"), []byte("[default]\n"+line+"\n"), 0o600)
		_, errs, code := runSesame(t, home, append([]string{"spa", "-T", "-A", "tcp/22", "-s"}, keyArgs...)...)
		if code != 1 || !strings.Contains(errs, ".fwknoprc:2:") || !strings.Contains(errs, want) {
			t.Errorf("%q: exit %d, %q; want file:line and %q", line, code, errs, want)
		}
	}
}

func TestSPAErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-T", "-s"}, "give -A"},
		{[]string{"-T", "-A", "tcp/22"}, "-a, or -s"},
		{[]string{"-A", "tcp/22", "-s"}, "-D HOST"},
		{[]string{"-T", "-A", "tcp/22", "-a", "host.example"}, "not an IP address"},
		{[]string{"-T", "-A", "22", "-s"}, "access message"},
		{[]string{"-T", "-A", "tcp/22", "-s", "-R"}, "-R is not supported"},
		{[]string{"-T", "-A", "tcp/22", "-s", "-P", "tcp"}, "only udp"},
		{[]string{"-T", "-A", "tcp/22", "-s", "-M", "pcbc"}, "PCBC"},
		{[]string{"-T", "-A", "tcp/22", "-s", "-M", "legacy"}, "legacy"},
		{[]string{"-T", "-A", "tcp/22", "-s", "--time-offset-plus", "x"}, "time offset"},
		{[]string{"-A", "tcp/22", "-s", "-D", "192.0.2.1", "-4", "-6"}, "exclude each other"},
	} {
		_, errs, code := runSesame(t, "", append(append([]string{"spa"}, c.args...), keyArgs...)...)
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q; want %q", c.args, code, errs, c.want)
		}
	}
	if _, errs, code := runSesame(t, "", "spa", "-T", "-A", "tcp/22", "-s", "--key-base64-rijndael", "bm9wZQ==", "--use-hmac"); code != 1 || !strings.Contains(errs, "--use-hmac without an HMAC key") {
		t.Errorf("--use-hmac without key: %d %q", code, errs)
	}
}

func TestSPAKeyGen(t *testing.T) {
	for typ, hlen := range map[string]int{"": 64, "md5": 16, "sha1": 20, "sha384": 128, "sha512": 128} {
		args := []string{"spa", "--key-gen"}
		if typ != "" {
			args = append(args, "--hmac-digest-type", typ)
		}
		out, errs, code := runSesame(t, "", args...)
		if code != 0 {
			t.Fatal(errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY_BASE64: ") || !strings.HasPrefix(lines[1], "HMAC_KEY_BASE64: ") {
			t.Fatalf("output %q", out)
		}
		k, err1 := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[0], "KEY_BASE64: "))
		h, err2 := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "HMAC_KEY_BASE64: "))
		if err1 != nil || err2 != nil || len(k) != 32 || len(h) != hlen {
			t.Errorf("%s: key %d bytes, HMAC key %d bytes (want 32, %d)", typ, len(k), len(h), hlen)
		}
	}
}

// The packet goes out as one UDP datagram, over IPv4 or IPv6 (loopback).
func TestSPASends(t *testing.T) {
	for _, c := range []struct{ net, addr, flag string }{{"udp4", "127.0.0.1", "-4"}, {"udp6", "::1", "-6"}} {
		pc, err := net.ListenPacket(c.net, net.JoinHostPort(c.addr, "0"))
		if err != nil {
			t.Logf("%s: %v (no %s loopback here)", c.net, err, c.net)
			continue
		}
		defer pc.Close()
		port := pc.LocalAddr().(*net.UDPAddr).Port
		args := append([]string{"spa", c.flag, "-D", c.addr, "-p", strconv.Itoa(port), "-A", "tcp/22", "-a", "2001:db8::9"}, keyArgs...)
		if _, errs, code := runSesame(t, "", args...); code != 0 {
			t.Fatalf("%s: %s", c.net, errs)
		}
		buf := make([]byte, 2048)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: %v", c.net, err)
		}
		src := from.(*net.UDPAddr).AddrPort().Addr()
		got := spaVerifier(t, "").Verify(buf[:n], src, netip.MustParseAddr(c.addr), time.Now())
		if got.Reason != verify.Accepted || got.Request.Allow.String() != "2001:db8::9" {
			t.Errorf("%s: %s %s", c.net, got.Reason, got.Detail)
		}
	}
}
