package preflight

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// shippedUnit reads packaging/sesamed.service, the unit the packages
// install; exists says which optional paths exist on the machine.
func shippedUnit(t *testing.T, exists ...string) *Sandbox {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	sb, err := LoadUnit(filepath.Join(filepath.Dir(file), "../../packaging/sesamed.service"))
	if err != nil {
		t.Fatal(err)
	}
	sb.exists = func(p string) bool { return slices.Contains(exists, p) }
	return sb
}

func TestShippedUnitSandbox(t *testing.T) {
	tests := []struct {
		path    string
		exists  []string
		ok      bool
		private bool
		why     string
	}{
		{path: "/var/log/sesame/sesame.log", ok: true},
		{path: "/var/lib/sesame/seqs", ok: true},
		{path: "/run/sesame/sesamed.pid", ok: true},
		{path: "/var/log/sesame", ok: true},
		{path: "/var/log/sesamex.log", why: "read-only (ProtectSystem=strict)"},
		{path: "/etc/sesame/seqs", why: "read-only (ProtectSystem=strict)"},
		{path: "/usr/share/x", why: "read-only (ProtectSystem=strict)"},
		{path: "/run/knockd.pid", why: "read-only (ProtectSystem=strict)"},
		{path: "/root/k.log", why: "inaccessible (ProtectHome=yes)"},
		{path: "/home/u/k.log", why: "inaccessible (ProtectHome=yes)"},
		{path: "/tmp/k.log", ok: true, private: true, why: "PrivateTmp=yes"},
		// knockd's log: writable when it exists (the package's tmpfiles.d
		// entry makes it), since a missing "-" path is left out.
		{path: "/var/log/knockd.log", exists: []string{"/var/log/knockd.log"}, ok: true},
		{path: "/var/log/knockd.log", why: "read-only (ProtectSystem=strict)"},
		{path: "/var/log/knockd.log.1", exists: []string{"/var/log/knockd.log"}, why: "read-only (ProtectSystem=strict)"},
		// knockd's man page keeps one-time sequence files in /etc/knockd.
		{path: "/etc/knockd/smtp_sequences", exists: []string{"/etc/knockd"}, ok: true},
		{path: "/etc/knockd/smtp_sequences", why: "read-only (ProtectSystem=strict)"},
		{path: "/etc/knockd.conf", exists: []string{"/etc/knockd"}, why: "read-only (ProtectSystem=strict)"},
	}
	for _, tt := range tests {
		sb := shippedUnit(t, tt.exists...)
		ok, private, why := sb.Writable(tt.path)
		if ok != tt.ok || private != tt.private || why != tt.why {
			t.Errorf("%s (existing %v): Writable = %v, %v, %q; want %v, %v, %q", tt.path, tt.exists, ok, private, why, tt.ok, tt.private, tt.why)
		}
	}
}

func TestUnitParsing(t *testing.T) {
	unit := []byte(`[Unit]
ReadWritePaths=/not/service
[Service]
ProtectSystem=strict
# ReadWritePaths=/commented
; ReadWritePaths=/commented/too
ReadWritePaths=/a -/b \
  /c
StateDirectory=x y:alias
ProtectHome=read-only
`)
	dropIn := []byte("[Service]\nReadWritePaths=\nReadWritePaths=/d\nReadOnlyPaths=/d/ro\nInaccessiblePaths=-/d/ro/secret\n")
	sb := ParseUnit("u.service", unit)
	sb.exists = func(p string) bool { return p == "/b" || p == "/d/ro/secret" }
	for p, want := range map[string]bool{"/a/f": true, "/b/f": true, "/c/f": true, "/not/service/f": false,
		"/commented/f": false, "/var/lib/x/f": true, "/var/lib/y/f": true, "/home/f": false} {
		if ok, _, _ := sb.Writable(p); ok != want {
			t.Errorf("unit: %s writable %v, want %v", p, ok, want)
		}
	}
	sb = ParseUnit("u.service", unit, dropIn)
	sb.exists = func(p string) bool { return p == "/d/ro/secret" }
	for p, want := range map[string]string{"/a/f": "read-only (ProtectSystem=strict)", "/d/f": "", "/d/ro/f": "read-only (ReadOnlyPaths=/d/ro)",
		"/d/ro/secret/f": "inaccessible (InaccessiblePaths=/d/ro/secret)"} {
		if _, _, why := sb.Writable(p); why != want {
			t.Errorf("with drop-in: %s: %q, want %q", p, why, want)
		}
	}
	if got := strings.Join(sb.WritablePlaces(), " "); got != "/var/lib/x /var/lib/y /d" {
		t.Errorf("WritablePlaces = %q", got)
	}
}

// The installed unit and its drop-ins are found where systemd looks,
// a drop-in in /etc winning over one of the same name in /usr/lib.
func TestInstalledUnit(t *testing.T) {
	root := t.TempDir()
	write := func(p, text string) {
		t.Helper()
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if sb, err := installedUnit(root); sb != nil || err != nil {
		t.Fatalf("nothing installed: %v, %v", sb, err)
	}
	write("usr/lib/systemd/system/sesamed.service", "[Service]\nProtectSystem=strict\n")
	write("usr/lib/systemd/system/sesamed.service.d/50-x.conf", "[Service]\nReadWritePaths=/usr-dropin\n")
	write("etc/systemd/system/sesamed.service.d/50-x.conf", "[Service]\nReadWritePaths=/etc-dropin\n")
	write("run/systemd/system/sesamed.service.d/10-y.conf", "[Service]\nReadWritePaths=/run-dropin\n")
	sb, err := installedUnit(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"usr/lib/systemd/system/sesamed.service", "run/systemd/system/sesamed.service.d/10-y.conf", "etc/systemd/system/sesamed.service.d/50-x.conf"}
	for i := range want {
		want[i] = filepath.Join(root, want[i])
	}
	if !slices.Equal(sb.Files, want) {
		t.Errorf("files %q, want %q", sb.Files, want)
	}
	sb.exists = func(string) bool { return true }
	if got := strings.Join(sb.WritablePlaces(), " "); got != "/run-dropin /etc-dropin" {
		t.Errorf("writable %q", got)
	}
}
