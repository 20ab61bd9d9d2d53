package access

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
)

const (
	k64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // "0123456789abcdef0123456789abcdef"
	h64 = "aG1hYy1rZXktZm9yLXRlc3Rpbmc="                 // "hmac-key-for-testing"
)

func parse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("access.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseEveryKey(t *testing.T) {
	c := parse(t, `# fwknopd access.conf
SOURCE ANY
KEY_BASE64 `+k64+`
HMAC_KEY_BASE64 `+h64+`

SOURCE: 192.168.1.0/255.255.255.0, 10.0.0.1 ,2001:db8::/32
DESTINATION 10.1.0.0/16
OPEN_PORTS tcp/22, udp/53
RESTRICT_PORTS	tcp/23
KEY secret key with spaces   ;comment
HMAC_KEY hmac secret
HMAC_DIGEST_TYPE SHA3_512
ENCRYPTION_MODE ctr
FW_ACCESS_TIMEOUT 45
MAX_FW_TIMEOUT 90
REQUIRE_USERNAME alice
REQUIRE_SOURCE_ADDRESS Y
ACCESS_EXPIRE 12/31/2027
ENABLE_CMD_EXEC N
FORWARD_ALL no

SOURCE 10.9.9.9
KEY_BASE64 `+k64+`
HMAC_KEY_BASE64 `+h64+`
REQUIRE_SOURCE yes
ACCESS_EXPIRE_EPOCH 1800000000
`)
	if len(c.Stanzas) != 3 {
		t.Fatalf("%d stanzas", len(c.Stanzas))
	}
	a, b, d := c.Stanzas[0], c.Stanzas[1], c.Stanzas[2]
	if a.Num != 1 || a.Line != 2 || a.Where() != "access.conf:2" || a.Name() != "spa#1" {
		t.Errorf("stanza 1 at %s num %d", a.Where(), a.Num)
	}
	if string(a.Keys.Key) != "0123456789abcdef0123456789abcdef" || string(a.Keys.HMACKey) != "hmac-key-for-testing" ||
		a.Keys.HMAC != spa.SHA256 || a.Keys.Mode != spa.CBC {
		t.Errorf("stanza 1 keys %+v", a.Keys)
	}
	if a.AccessTimeout != 30*time.Second || a.MaxTimeout != 300*time.Second || a.OpenPorts != nil || a.Destination != nil || !a.Expires.IsZero() {
		t.Errorf("stanza 1 defaults %+v", a)
	}
	if !a.MatchSource(netip.MustParseAddr("203.0.113.9")) || !a.MatchSource(netip.MustParseAddr("2001:db8::9")) {
		t.Error("ANY does not match")
	}
	if b.Line != 6 || len(b.Source) != 3 || b.Source[0] != netip.MustParsePrefix("192.168.1.0/24") ||
		b.Source[1] != netip.MustParsePrefix("10.0.0.1/32") || b.Source[2] != netip.MustParsePrefix("2001:db8::/32") {
		t.Errorf("stanza 2 source %v at line %d", b.Source, b.Line)
	}
	if string(b.Keys.Key) != "secret key with spaces   " {
		t.Errorf("KEY %q: fwknopd keeps the blanks before ';'", b.Keys.Key)
	}
	if string(b.Keys.HMACKey) != "hmac secret" || b.Keys.HMAC != spa.SHA3_512 || b.Keys.Mode != spa.CTR {
		t.Errorf("stanza 2 keys %+v", b.Keys)
	}
	wantPorts := []knock.Port{{Num: 22, Proto: knock.TCP}, {Num: 53, Proto: knock.UDP}}
	if knock.FormatSequence(b.OpenPorts) != knock.FormatSequence(wantPorts) || knock.FormatSequence(b.RestrictPorts) != "23:tcp" {
		t.Errorf("ports %v / %v", b.OpenPorts, b.RestrictPorts)
	}
	if b.AccessTimeout != 45*time.Second || b.MaxTimeout != 90*time.Second || b.RequireUser != "alice" || !b.RequireSource {
		t.Errorf("stanza 2 %+v", b)
	}
	if want := time.Date(2027, 12, 31, 0, 0, 0, 0, time.Local); !b.Expires.Equal(want) {
		t.Errorf("ACCESS_EXPIRE %v, want %v", b.Expires, want)
	}
	if !b.MatchDestination(netip.MustParseAddr("10.1.2.3")) || b.MatchDestination(netip.MustParseAddr("10.2.0.1")) {
		t.Error("DESTINATION")
	}
	if !d.RequireSource || !d.Expires.Equal(time.Unix(1800000000, 0)) || d.Num != 3 {
		t.Errorf("stanza 3 %+v", d)
	}
}

func TestParseErrors(t *testing.T) {
	ok := "KEY_BASE64 " + k64 + "\nHMAC_KEY_BASE64 " + h64 + "\n"
	for _, c := range []struct {
		text, want string
	}{
		{"", "no SOURCE stanza"},
		{"KEY x\nSOURCE ANY\n" + ok, "access.conf:1: KEY before the first SOURCE line"},
		{"SOURCE ANY\n", "access.conf:1: stanza has no KEY or KEY_BASE64"},
		{"SOURCE ANY\nKEY abc\n", "access.conf:1: stanza has no HMAC_KEY or HMAC_KEY_BASE64"},
		{"SOURCE ANY\nKEY abc\nHMAC_KEY abc\n", "access.conf:3: the HMAC key is the encryption key"},
		{"SOURCE 10.0.0.300\n" + ok, "access.conf:1: SOURCE: bad address"},
		{"SOURCE 10.0.0.0/33\n" + ok, "bad mask"},
		{"SOURCE 10.0.0.0/255.0.255.0\n" + ok, "not contiguous"},
		{"SOURCE 10.0.0.1,\n" + ok, "empty entry"},
		{"SOURCE ANY\n" + ok + "DESTINATION nowhere\n", "access.conf:4: DESTINATION: bad address"},
		{"SOURCE ANY\n" + ok + "OPEN_PORTS tcp/22,sctp/9\n", "access.conf:4: OPEN_PORTS"},
		{"SOURCE ANY\n" + ok + "OPEN_PORTS tcp/0\n", "out of range"},
		{"SOURCE ANY\n" + ok + "RESTRICT_PORTS 22\n", "want PROTO/PORT"},
		{"SOURCE ANY\nKEY " + strings.Repeat("k", 33) + "\nHMAC_KEY x\n", "access.conf:2: KEY: 33 bytes"},
		{"SOURCE ANY\nKEY k\nHMAC_KEY " + strings.Repeat("h", 137) + "\n", "HMAC_KEY: 137 bytes"},
		{"SOURCE ANY\nKEY_BASE64 not*base64\nHMAC_KEY x\n", "KEY_BASE64: not base64"},
		{"SOURCE ANY\nKEY __CHANGEME__\nHMAC_KEY x\n", "still __CHANGEME__"},
		{"SOURCE ANY\n" + ok + "HMAC_DIGEST_TYPE sha999\n", "access.conf:4: HMAC_DIGEST_TYPE"},
		{"SOURCE ANY\n" + ok + "ENCRYPTION_MODE PCBC\n", "PCBC: not supported"},
		{"SOURCE ANY\n" + ok + "ENCRYPTION_MODE legacy\n", "legacy"},
		{"SOURCE ANY\n" + ok + "ENCRYPTION_MODE Asymmetric\n", "GnuPG"},
		{"SOURCE ANY\n" + ok + "FW_ACCESS_TIMEOUT 30s\n", "FW_ACCESS_TIMEOUT \"30s\""},
		{"SOURCE ANY\n" + ok + "MAX_FW_TIMEOUT -1\n", "MAX_FW_TIMEOUT"},
		{"SOURCE ANY\n" + ok + "REQUIRE_SOURCE_ADDRESS maybe\n", "want Y or N"},
		{"SOURCE ANY\n" + ok + "ACCESS_EXPIRE 2027-12-31\n", "MM/DD/YYYY"},
		{"SOURCE ANY\n" + ok + "ACCESS_EXPIRE 02/30/2027\n", "no day 30"},
		{"SOURCE ANY\n" + ok + "ACCESS_EXPIRE_EPOCH soon\n", "ACCESS_EXPIRE_EPOCH"},
		{"SOURCE ANY\n" + ok + "GPG_DECRYPT_ID ABCD\n", "access.conf:4: GPG_DECRYPT_ID: GnuPG SPA is not supported"},
		{"SOURCE ANY\nGPG_ALLOW_NO_PW Y\n", "GnuPG"},
		{"SOURCE ANY\n" + ok + "ENABLE_CMD_EXEC Y\n", "ENABLE_CMD_EXEC Y: Sesame does not support command messages"},
		{"SOURCE ANY\n" + ok + "CMD_CYCLE_OPEN /bin/true\n", "command cycles"},
		{"SOURCE ANY\n" + ok + "FORCE_NAT 10.0.0.1 22\n", "NAT access"},
		{"SOURCE ANY\n" + ok + "FORWARD_ALL Y\n", "NAT access"},
		{"SOURCE ANY\n" + ok + "OPEN_PORT tcp/22\n", "unknown access.conf key \"OPEN_PORT\""},
		{"SOURCE ANY\n" + ok + "REQUIRE_USERNAME\n", "access.conf:4: REQUIRE_USERNAME: missing value"},
		{"SOURCE ANY\n" + ok + "%include_keys /nonexistent/keys\n", "%include_keys"},
		{"%include /nonexistent/other.conf\n", "access.conf:1: open /nonexistent/other.conf"},
	} {
		_, err := Parse("access.conf", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
		var e *Error
		if err != nil && c.want != "no SOURCE stanza" && !errors.As(err, &e) {
			t.Errorf("%q: %T is not an *access.Error", c.text, err)
		}
	}
}

// Every problem is reported, each with its line.
func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("a.conf", []byte("SOURCE ANY\nKEY k\nHMAC_KEY h\nOPEN_PORTS x\nBOGUS 1\nSOURCE 1.2.3\n"))
	for _, want := range []string{"a.conf:4: OPEN_PORTS", "a.conf:5: unknown", "a.conf:6: SOURCE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestIncludes(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "keys"), "# keys\nKEY_BASE64 "+k64+"\nHMAC_KEY_BASE64 "+h64+"\n")
	write(t, filepath.Join(dir, "d", "b.conf"), "SOURCE 10.0.0.2\n%include_keys ../keys\n")
	write(t, filepath.Join(dir, "d", "a.conf"), "SOURCE 10.0.0.1\n%include_keys "+filepath.Join(dir, "keys")+"\n")
	write(t, filepath.Join(dir, "d", "ignored.txt"), "not a conf file")
	write(t, filepath.Join(dir, "other.conf"), "SOURCE 10.0.0.3\nKEY_BASE64 "+k64+"\nHMAC_KEY_BASE64 "+h64+"\n")
	main := filepath.Join(dir, "access.conf")
	// The lines after an %include still belong to the stanza before it.
	write(t, main, "SOURCE 10.0.0.9\nKEY_BASE64 "+k64+"\n%include other.conf\n%include_folder d\nHMAC_KEY_BASE64 "+h64+"\n")
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range c.Stanzas {
		got = append(got, s.Source[0].Addr().String()+"@"+filepath.Base(s.File))
	}
	if strings.Join(got, " ") != "10.0.0.9@access.conf 10.0.0.3@other.conf 10.0.0.1@a.conf 10.0.0.2@b.conf" {
		t.Errorf("stanzas %v", got)
	}
	for _, s := range c.Stanzas {
		if s.Keys.HMACKey == nil || s.Keys.Key == nil {
			t.Errorf("%s lacks keys", s.Where())
		}
	}
	// The folder on its own, as --access-folder.
	c, err = Load(filepath.Join(dir, "d"))
	if err != nil || len(c.Stanzas) != 2 || c.Stanzas[0].Num != 1 || c.Stanzas[1].Num != 2 {
		t.Fatalf("folder: %v %v", c, err)
	}
	// A key file may hold only keys; the error names its line.
	write(t, filepath.Join(dir, "keys"), "KEY_BASE64 "+k64+"\nOPEN_PORTS tcp/1\n")
	if _, err := Load(main); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "keys")+":2: OPEN_PORTS") {
		t.Errorf("key file error: %v", err)
	}
	// Includes nest at most three deep (an include loop stops there).
	write(t, filepath.Join(dir, "loop.conf"), "%include loop.conf\n")
	if _, err := Load(filepath.Join(dir, "loop.conf")); err == nil || !strings.Contains(err.Error(), "levels of includes") {
		t.Errorf("include loop: %v", err)
	}
}

func TestPermissionWarning(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "access.conf")
	write(t, p, "SOURCE ANY\nKEY_BASE64 "+k64+"\nHMAC_KEY_BASE64 "+h64+"\nFW_ACCESS_TIMEOUT 600\n")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings, "\n")
	if !strings.Contains(w, "mode 0644") || !strings.Contains(w, "access.conf:1: MAX_FW_TIMEOUT (5m0s) is below FW_ACCESS_TIMEOUT (10m0s)") {
		t.Errorf("warnings: %q", w)
	}
}

func TestStanzaDecisions(t *testing.T) {
	c := parse(t, "SOURCE 192.0.2.0/24, ::ffff:198.51.100.7\nKEY k\nHMAC_KEY h\nOPEN_PORTS tcp/22,udp/53\nRESTRICT_PORTS udp/53\nMAX_FW_TIMEOUT 60\nACCESS_EXPIRE_EPOCH 1700000000\n"+
		"SOURCE ANY\nKEY k\nHMAC_KEY h\nRESTRICT_PORTS tcp/23\n")
	s, any := c.Stanzas[0], c.Stanzas[1]
	for a, want := range map[string]bool{"192.0.2.200": true, "::ffff:192.0.2.1": true, "198.51.100.7": true, "192.0.3.1": false, "2001:db8::1": false} {
		if got := s.MatchSource(netip.MustParseAddr(a)); got != want {
			t.Errorf("MatchSource(%s) = %v", a, got)
		}
	}
	tcp := func(n uint16) knock.Port { return knock.Port{Num: n, Proto: knock.TCP} }
	udp := func(n uint16) knock.Port { return knock.Port{Num: n, Proto: knock.UDP} }
	for _, c := range []struct {
		st  *Stanza
		req []knock.Port
		ok  bool
		bad knock.Port
	}{
		{s, []knock.Port{tcp(22)}, true, knock.Port{}},
		{s, []knock.Port{tcp(22), udp(53)}, false, udp(53)}, // restricted wins over open
		{s, []knock.Port{tcp(2222)}, false, tcp(2222)},
		{any, []knock.Port{tcp(2222), udp(1)}, true, knock.Port{}},
		{any, []knock.Port{tcp(2222), tcp(23)}, false, tcp(23)},
		{any, nil, false, knock.Port{}},
	} {
		bad, ok := c.st.AllowPorts(c.req)
		if ok != c.ok || bad != c.bad {
			t.Errorf("%s AllowPorts(%v) = %v, %v", c.st.Name(), c.req, bad, ok)
		}
	}
	for client, want := range map[int]time.Duration{0: 30 * time.Second, 45: 45 * time.Second, 61: 60 * time.Second} {
		if got := s.Timeout(client); got != want {
			t.Errorf("Timeout(%d) = %s, want %s", client, got, want)
		}
	}
	exp := time.Unix(1700000000, 0)
	if s.Expired(exp) || !s.Expired(exp.Add(time.Second)) || any.Expired(exp.Add(100*365*24*time.Hour)) {
		t.Error("Expired")
	}
}
