package packaging

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const testVersion = "1.0.0"

// TestDeb inspects the .deb: control fields, files, modes, owners,
// conffiles, maintainer scripts, and what the files contain.
func TestDeb(t *testing.T) {
	needTools(t, "dpkg-deb")
	deb, _ := packages(t, testVersion)

	fields := map[string]string{
		"Package": "sesame", "Version": testVersion + "-1", "Architecture": runtime.GOARCH,
		"Depends": "iptables, procps", "Recommends": "nftables", "Section": "net", "Priority": "optional",
	}
	for field, want := range fields {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}

	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	if got := readFile(t, filepath.Join(ctrl, "conffiles")); got != "/etc/sesame/sesame.conf\n" {
		t.Errorf("conffiles = %q", got)
	}
	for script, src := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		path := filepath.Join(ctrl, script)
		if readFile(t, path) != readFile(t, filepath.Join(repoRoot(t), "packaging/scripts", src)) {
			t.Errorf("%s is not packaging/scripts/%s", script, src)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v mode %v, want 0755", script, err, fi.Mode())
		}
		run(t, "sh", "-n", path)
	}
	if _, err := os.Stat(filepath.Join(ctrl, "preinst")); err == nil {
		t.Errorf("unexpected preinst")
	}

	got := map[string]pkgFile{}
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		// drwx------ root/root         0 2025-05-20 10:00 ./etc/sesame/
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if path == "" {
			continue
		}
		pf := pkgFile{mode: parseLsMode(t, f[0]), owner: strings.Replace(f[1], "/", ":", 1)}
		if pf.mode.IsRegular() {
			pf.sha256 = sha256File(t, filepath.Join(tree, path))
		}
		got[path] = pf
	}
	for _, c := range strings.Fields(readFile(t, filepath.Join(ctrl, "conffiles"))) {
		if f, ok := got[c]; ok {
			f.conf = true
			got[c] = f
		}
	}
	checkFiles(t, "deb", got)
	checkTree(t, tree, testVersion)
}

// parseLsMode turns "drwx------" into fs.ModeDir|0700.
func parseLsMode(t *testing.T, s string) fs.FileMode {
	t.Helper()
	if len(s) != 10 {
		t.Fatalf("mode %q", s)
	}
	var m fs.FileMode
	switch s[0] {
	case 'd':
		m = fs.ModeDir
	case 'l':
		m = fs.ModeSymlink
	case '-':
	default:
		t.Fatalf("mode %q: unexpected type", s)
	}
	for i, c := range s[1:] {
		if c != '-' {
			m |= 1 << (8 - i)
		}
	}
	return m
}

// fileMode turns rpm's numeric st_mode into an fs.FileMode.
func fileMode(t *testing.T, s string) fs.FileMode {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("rpm mode %q: %v", s, err)
	}
	m := fs.FileMode(n & 0o777)
	switch n & 0o170000 {
	case 0o040000:
		m |= fs.ModeDir
	case 0o120000:
		m |= fs.ModeSymlink
	case 0o100000:
	default:
		t.Fatalf("rpm mode %q: unexpected type", s)
	}
	return m
}
