package sshknock

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// TestParseKeys: every option, OpenSSH's quoting and case rules, tabs,
// comments with spaces, CRLF, blank and # lines, ssh-keygen's own .pub
// lines behind options.
func TestParseKeys(t *testing.T) {
	ed, rsaK, ec := keygen(t, "ed25519"), keygen(t, "rsa3072"), keygen(t, "ecdsa521")
	fido := sshtest.NewFIDO(t, ssh.KeyAlgoSKECDSA256)
	file := strings.Join([]string{
		"# Sesame's authorized_keys",
		"",
		`open="tcp/22, tcp/443",timeout="120",from="198.51.100.0/24,!198.51.100.66,2001:db8::/32",expiry-time="202701011230Z" ` + ed.Line,
		"   \t",
		`OPEN="udp/53"	` + rsaK.Line + "\r",
		`from="203.0.113.5",open="tcp/22",expiry-time="20270101",expiry-time="20261231" ` + ec.Line,
		`open="tcp/22",verify-required ` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fido.PublicKey()))) + " dave's token  (yubikey)",
	}, "\n")
	ks, err := parseKeys("/etc/sesame/authorized_keys", []byte(file), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.List) != 4 {
		t.Fatalf("%d keys", len(ks.List))
	}
	a, b, c, d := ks.List[0], ks.List[1], ks.List[2], ks.List[3]
	if a.Line != 3 || b.Line != 5 || c.Line != 6 || d.Line != 7 || a.File != "/etc/sesame/authorized_keys" {
		t.Errorf("lines %d %d %d %d file %q", a.Line, b.Line, c.Line, d.Line, a.File)
	}
	if FormatAccess(a.Open) != "tcp/22,tcp/443" || a.Timeout != 2*time.Minute || a.Comment != "ed25519@sesame.test" ||
		!a.Expiry.Equal(time.Date(2027, 1, 1, 12, 30, 0, 0, time.UTC)) || a.VerifyRequired {
		t.Errorf("key a: %+v", a)
	}
	for addr, want := range map[string]bool{"198.51.100.1": true, "198.51.100.66": false, "198.51.101.1": false, "2001:db8:5::1": true, "2001:db9::1": false, "::ffff:198.51.100.9": true} {
		if got := a.AllowsAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("from= %s: %v", addr, got)
		}
	}
	if FormatAccess(b.Open) != "udp/53" || b.Timeout != DefaultTimeout || len(b.From) != 0 || !b.Expiry.IsZero() || b.Comment != "rsa3072@sesame.test" {
		t.Errorf("key b: %+v", b)
	}
	if !b.AllowsAddr(netip.MustParseAddr("2001:db8::1")) || !b.AllowsPort(dns) || b.AllowsPort(knock.Port{Num: 53, Proto: knock.TCP}) {
		t.Error("key b's checks")
	}
	if !c.Expiry.Equal(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("the earliest expiry-time wins (OpenSSH): %v", c.Expiry)
	}
	if !c.AllowsAddr(netip.MustParseAddr("203.0.113.5")) || c.AllowsAddr(netip.MustParseAddr("203.0.113.6")) {
		t.Error("from= single address")
	}
	if !d.VerifyRequired || d.Comment != "dave's token  (yubikey)" || !d.IsFIDO() {
		t.Errorf("key d: %+v", d)
	}
	if ks.Lookup(FingerprintOf(ed.Public)) != a || ks.Lookup(Fingerprint{}) != nil {
		t.Error("Lookup")
	}
	if c.Expired(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)) || !c.Expired(time.Date(2026, 12, 31, 0, 0, 1, 0, time.UTC)) {
		t.Error("Expired: OpenSSH refuses from the second after expiry-time")
	}
}

// TestExpiryLocalTime: without Z, expiry-time is the host's local time,
// as in OpenSSH.
func TestExpiryLocalTime(t *testing.T) {
	loc := time.FixedZone("UTC+2", 2*3600)
	ed := keygen(t, "ed25519")
	ks, err := parseKeys("f", []byte(`open="tcp/22",expiry-time="202701011230" `+ed.Line), loc)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2027, 1, 1, 10, 30, 0, 0, time.UTC); !ks.List[0].Expiry.Equal(want) {
		t.Errorf("expiry %v, want %v", ks.List[0].Expiry.UTC(), want)
	}
	ks, err = parseKeys("f", []byte(`open="tcp/22",expiry-time="20270101123059UTC" `+ed.Line), loc)
	if err != nil || !ks.List[0].Expiry.Equal(time.Date(2027, 1, 1, 12, 30, 59, 0, time.UTC)) {
		t.Errorf("UTC suffix: %v %v", err, ks)
	}
}

// TestParseKeysErrors: each problem is an error naming file and line,
// all problems of a file are reported, and such a file yields no keys.
func TestParseKeysErrors(t *testing.T) {
	ed, rsa2048 := keygen(t, "ed25519"), keygen(t, "rsa2048")
	edB64 := strings.Fields(ed.Line)[1]
	dsa := dsaLine(t)
	cases := []struct {
		line, want string
	}{
		{ed.Line, `missing open="..."`},
		{`open="tcp/22",command="/bin/true" ` + ed.Line, `unknown option "command"`},
		{`open="tcp/22",no-pty ` + ed.Line, `unknown option "no-pty"`},
		{`open="tcp/22" ` + rsa2048.Line, "weak key: RSA 2048 bits"},
		{`open="tcp/22" ` + dsa, "weak key: DSA"},
		{`open="tcp/22" ssh-ed25519-cert-v01@openssh.com AAAA x`, "certificates"},
		{`open="tcp/22" ssh-ed2551 ` + edB64, `unsupported key type "ssh-ed2551"`},
		{`ssh-ed2551 ` + edB64, `unsupported key type "ssh-ed2551"`},
		{`open="tcp/22" ssh-rsa ` + edB64, "key says ssh-rsa but its data is ssh-ed25519"},
		{`open="tcp/22" ssh-ed25519 !!!notbase64`, "bad base64"},
		{`open="tcp/22" ssh-ed25519`, "want [options] type base64-key"},
		{`open="tcp/22`, "unterminated quote"},
		{`open=tcp/22 ` + ed.Line, "missing start quote"},
		{`open="tcp/22",,timeout="5" ` + ed.Line, "empty option"},
		{`open="tcp/22", ` + ed.Line, "end of options"},
		{`open="tcp/22"x ` + ed.Line, `unexpected "x"`},
		{`open="tcp/22",open="tcp/23" ` + ed.Line, "open given twice"},
		{`open ` + ed.Line, "needs a value"},
		{`open="tcp/22",verify-required="yes" ` + ed.Line, "takes no value"},
		{`open="tcp/22",verify-required ` + ed.Line, "verify-required applies to FIDO keys"},
		{`open="" ` + ed.Line, "empty port list"},
		{`open="22" ` + ed.Line, "want PROTO/PORT"},
		{`open="sctp/22" ` + ed.Line, "unknown protocol"},
		{`open="tcp/0" ` + ed.Line, "out of range"},
		{`open="tcp/22,tcp/22" ` + ed.Line, "listed twice"},
		{`open="tcp/22",timeout="0" ` + ed.Line, "want whole seconds"},
		{`open="tcp/22",timeout="86401" ` + ed.Line, "want whole seconds"},
		{`open="tcp/22",timeout="1.5" ` + ed.Line, "want whole seconds"},
		{`open="tcp/22",from="*.example.com" ` + ed.Line, "host names and wildcards are not supported"},
		{`open="tcp/22",from="10.0.0.1/8" ` + ed.Line, "host bits set (did you mean 10.0.0.0/8?)"},
		{`open="tcp/22",from="10.0.0.0/33" ` + ed.Line, "10.0.0.0/33"},
		{`open="tcp/22",from="10.0.0.0/8,," ` + ed.Line, "empty element"},
		{`open="tcp/22",from="fe80::1%eth0" ` + ed.Line, "want an address or CIDR"},
		{`open="tcp/22",expiry-time="2027" ` + ed.Line, "want YYYYMMDD"},
		{`open="tcp/22",expiry-time="20271301" ` + ed.Line, "not a valid date"},
		{`open="tcp/22",expiry-time="1970010100Z0" ` + ed.Line, "not a valid date"},
	}
	for _, c := range cases {
		_, err := parseKeys("/etc/sesame/authorized_keys", []byte("# header\n\n"+c.line+"\n"), time.UTC)
		if err == nil {
			t.Errorf("%q: accepted", c.line)
			continue
		}
		if !strings.HasPrefix(err.Error(), "/etc/sesame/authorized_keys:3: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant /etc/sesame/authorized_keys:3: ...%s", c.line, err, c.want)
		}
	}

	// Several problems: all reported; a duplicate names the first line.
	file := strings.Join([]string{`open="tcp/22" ` + ed.Line, `open="tcp/23",bogus ` + keygen(t, "ed25519b").Line, `open="tcp/22" ` + rsa2048.Line, `open="tcp/24" ` + ed.Line}, "\n")
	ks, err := parseKeys("ak", []byte(file), time.UTC)
	if ks != nil || err == nil {
		t.Fatalf("keys %v err %v", ks, err)
	}
	msg := err.Error()
	for _, want := range []string{`ak:2: unknown option "bogus"`, "ak:3: weak key: RSA 2048", "ak:4: key SHA256:", "is already listed at line 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

// dsaLine returns an ssh-dss public key line made by ssh-keygen (which
// Debian 12's OpenSSH still makes), or a fixed DSA blob when it no longer
// does.
func dsaLine(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "dsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t dsa: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestLoadKeys reads a file and names it in errors.
func TestLoadKeys(t *testing.T) {
	ed := keygen(t, "ed25519")
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(`open="tcp/22" `+ed.Line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeys(path)
	if err != nil || len(ks.List) != 1 || ks.File != path {
		t.Fatalf("%v %+v", err, ks)
	}
	if err := os.WriteFile(path, []byte("\n"+ed.Line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("error %v does not start with %s:2:", err, path)
	}
	if _, err := LoadKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestFingerprint: ours is OpenSSH's, and parses back.
func TestFingerprint(t *testing.T) {
	k := keygen(t, "ecdsa384")
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", k.Path+".pub").CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	fp := FingerprintOf(k.Public)
	if f := strings.Fields(string(out)); len(f) < 2 || f[1] != fp.String() {
		t.Errorf("ssh-keygen -l says %q, we say %s", out, fp)
	}
	back, err := ParseFingerprint(fp.String())
	if err != nil || back != fp {
		t.Errorf("ParseFingerprint: %v", err)
	}
	if _, err := ParseFingerprint("MD5:aa"); err == nil {
		t.Error("MD5 accepted")
	}
}

// FuzzParseKeys: the parser never panics; what it accepts satisfies the
// invariants the Verifier relies on, and every error names file:line.
func FuzzParseKeys(f *testing.F) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edKey, _ := ssh.NewPublicKey(edPub)
	ecKey, _ := ssh.NewPublicKey(&ecPriv.PublicKey)
	for _, s := range []string{
		authLine(`open="tcp/22"`, edKey, "alice"),
		authLine(`open="tcp/22,udp/53",timeout="30",from="10.0.0.0/8,!10.1.1.1,2001:db8::/32",expiry-time="20270101Z"`, ecKey, "bob smith"),
		authLine(`OPEN="tcp/22",Verify-Required,no-verify-required`, edKey, ""),
		"# comment\n\n" + authLine(`open="tcp/1\"2"`, edKey, "x"),
		authLine("", edKey, "no options"),
		`open="tcp/22" ssh-dss AAAAB3NzaC1kc3MAAACB`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := parseKeys("fz", data, time.UTC)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fz:") {
					t.Fatalf("error line without file:line: %q", line)
				}
			}
			return
		}
		for _, k := range ks.List {
			if len(k.Open) == 0 || len(k.Open) > MaxPorts || k.Timeout <= 0 || k.Timeout > MaxTimeout || k.Line < 1 {
				t.Fatalf("accepted key breaks invariants: %+v", k)
			}
			if k.VerifyRequired && !k.IsFIDO() {
				t.Fatalf("verify-required on %s", k.Public.Type())
			}
			if ks.Lookup(k.Fingerprint) != k || FingerprintOf(k.Public) != k.Fingerprint {
				t.Fatal("lookup")
			}
			for _, p := range k.Open {
				if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
					t.Fatalf("port %v", p)
				}
			}
		}
	})
}
