package packaging

import (
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wantFile is one path both packages must install, with its mode.
type wantFile struct {
	path string
	mode fs.FileMode // permission bits, plus fs.ModeDir for directories
	conf bool        // a conffile (deb) / %config(noreplace) (rpm)
	only string      // "deb" or "rpm" when the formats differ
	// same: the payload must equal this file of the repository.
	same string
}

var wantFiles = []wantFile{
	{path: "/usr/sbin/sesamed", mode: 0o755},
	{path: "/usr/bin/sesame", mode: 0o755},
	{path: "/usr/lib/systemd/system/sesamed.service", mode: 0o644, same: "packaging/sesamed.service"},
	{path: "/usr/lib/tmpfiles.d/sesame.conf", mode: 0o644, same: "packaging/tmpfiles.conf"},
	{path: "/etc/sesame", mode: fs.ModeDir | 0o700},
	{path: "/etc/sesame/sesame.conf", mode: 0o600, conf: true, same: "packaging/sesame.conf"},
	{path: "/var/lib/sesame", mode: fs.ModeDir | 0o700},
	{path: "/usr/share/man/man1/sesame.1.gz", mode: 0o644},
	{path: "/usr/share/man/man1/sesame-knock.1.gz", mode: 0o644},
	{path: "/usr/share/man/man1/sesame-check.1.gz", mode: 0o644},
	{path: "/usr/share/man/man1/sesame-grants.1.gz", mode: 0o644},
	{path: "/usr/share/man/man1/sesame-revoke.1.gz", mode: 0o644},
	{path: "/usr/share/man/man1/sesame-spa.1.gz", mode: 0o644},
	{path: "/usr/share/man/man5/sesame.conf.5.gz", mode: 0o644},
	{path: "/usr/share/man/man8/sesamed.8.gz", mode: 0o644},
	{path: "/usr/share/bash-completion/completions/sesame", mode: 0o644},
	{path: "/usr/share/zsh/vendor-completions/_sesame", mode: 0o644, only: "deb"},
	{path: "/usr/share/zsh/site-functions/_sesame", mode: 0o644, only: "rpm"},
	{path: "/usr/share/fish/vendor_completions.d/sesame.fish", mode: 0o644},
	{path: "/usr/share/doc/sesame/copyright", mode: 0o644},
	{path: "/usr/share/licenses/sesame/LICENSE", mode: 0o644, only: "rpm", same: "LICENSE"},
}

// pkgFile is a path as a package lists it.
type pkgFile struct {
	mode   fs.FileMode
	conf   bool
	owner  string // user:group
	sha256 string // empty for directories
}

// checkFiles compares a package's listing with wantFiles. Directories
// other than the wanted ones must be plain 0755 parents; the only other
// files allowed are more sesame-*.1.gz pages (one per subcommand).
func checkFiles(t *testing.T, format string, got map[string]pkgFile) {
	t.Helper()
	want := map[string]wantFile{}
	for _, w := range wantFiles {
		if w.only == "" || w.only == format {
			want[w.path] = w
		}
	}
	for path, w := range want {
		g, ok := got[path]
		if !ok {
			t.Errorf("%s: %s missing", format, path)
			continue
		}
		if g.mode != w.mode {
			t.Errorf("%s: %s mode %v, want %v", format, path, g.mode, w.mode)
		}
		if g.conf != w.conf {
			t.Errorf("%s: %s conffile %v, want %v", format, path, g.conf, w.conf)
		}
		if w.same != "" {
			if sum := sha256File(t, filepath.Join(repoRoot(t), w.same)); g.sha256 != sum {
				t.Errorf("%s: %s differs from %s", format, path, w.same)
			}
		}
	}
	for path, g := range got {
		if g.owner != "root:root" {
			t.Errorf("%s: %s owned by %s", format, path, g.owner)
		}
		if _, ok := want[path]; ok {
			continue
		}
		switch {
		case g.mode == fs.ModeDir|0o755:
		case strings.HasPrefix(path, "/usr/share/man/man1/sesame-") && strings.HasSuffix(path, ".1.gz") && g.mode == 0o644:
			if strings.Contains(path, "gen-man") {
				t.Errorf("%s: the hidden gen-man command got a man page: %s", format, path)
			}
		default:
			t.Errorf("%s: unexpected %s (mode %v)", format, path, g.mode)
		}
	}
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkTree checks what the files in an unpacked package contain.
func checkTree(t *testing.T, root, version string) {
	t.Helper()
	for _, bin := range []string{"usr/sbin/sesamed", "usr/bin/sesame"} {
		checkStatic(t, filepath.Join(root, bin))
	}
	if out := run(t, filepath.Join(root, "usr/sbin/sesamed"), "-V"); out != "sesamed "+version+"\n" {
		t.Errorf("sesamed -V = %q, want version %s", out, version)
	}
	if out := run(t, filepath.Join(root, "usr/bin/sesame"), "--version"); !strings.Contains(out, version) {
		t.Errorf("sesame --version = %q, want version %s", out, version)
	}
	// The packaged daemon accepts the packaged config.
	run(t, filepath.Join(root, "usr/sbin/sesamed"), "--check", "-c", filepath.Join(root, "etc/sesame/sesame.conf"))

	for page, th := range map[string]string{
		"usr/share/man/man8/sesamed.8.gz":       `.TH SESAMED 8`,
		"usr/share/man/man1/sesame.1.gz":        `.TH "SESAME" "1"`,
		"usr/share/man/man1/sesame-knock.1.gz":  `.TH "SESAME-KNOCK" "1"`,
		"usr/share/man/man1/sesame-rescue.1.gz": `.TH "SESAME-RESCUE" "1"`,
		"usr/share/man/man5/sesame.conf.5.gz":   `.TH sesame.conf 5`,
	} {
		text := gunzip(t, filepath.Join(root, page))
		if !strings.Contains(text, th) || !strings.Contains(text, "Sesame "+version) {
			t.Errorf("%s: want %s and version %s in:\n%.300s", page, th, version, text)
		}
	}
	if text := gunzip(t, filepath.Join(root, "usr/share/man/man8/sesamed.8.gz")); !strings.Contains(text, "--teardown") || strings.Contains(text, "gen-man") ||
		!strings.Contains(text, ".SH EXIT STATUS") || strings.Contains(text, "[=false]") {
		t.Errorf("sesamed.8 should list --teardown, have EXIT STATUS, and hide --gen-man and cobra's [=false]")
	}
	for path, marker := range map[string]string{
		"usr/share/bash-completion/completions/sesame":    "__start_sesame",
		"usr/share/zsh/vendor-completions/_sesame":        "#compdef sesame",
		"usr/share/fish/vendor_completions.d/sesame.fish": "complete -c sesame",
	} {
		if !strings.Contains(readFile(t, filepath.Join(root, path)), marker) {
			t.Errorf("%s lacks %q", path, marker)
		}
	}
	checkCopyright(t, root)
}

// checkStatic: a cgo-free build has no program interpreter and no
// shared libraries.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has PT_INTERP)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs %v", path, libs)
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// gzip -n: no name or time stored, so rebuilds are byte-identical.
	if z.Name != "" || !z.ModTime.IsZero() {
		t.Errorf("%s: gzip header keeps name %q / time %v", path, z.Name, z.ModTime)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// checkCopyright: the MIT license, and a license text for the Go
// toolchain and every module linked into either binary.
func checkCopyright(t *testing.T, root string) {
	t.Helper()
	text := readFile(t, filepath.Join(root, "usr/share/doc/sesame/copyright"))
	if !strings.Contains(text, "License: MIT\n Permission is hereby granted") {
		t.Errorf("copyright lacks Sesame's MIT license")
	}
	for _, bin := range []string{"usr/sbin/sesamed", "usr/bin/sesame"} {
		bi, err := buildinfo.ReadFile(filepath.Join(root, bin))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "The Go standard library and runtime ("+bi.GoVersion+")") {
			t.Errorf("copyright lacks the Go %s license", bi.GoVersion)
		}
		for _, d := range bi.Deps {
			if want := fmt.Sprintf("Go module %s@%s, statically linked", d.Path, d.Version); !strings.Contains(text, want) {
				t.Errorf("copyright lacks %s (linked into %s)", want, bin)
			}
		}
	}
}
