package packaging

import (
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rpmArch maps GOARCH to rpm's names for the architectures Sesame builds.
var rpmArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386", "arm": "armv7hl", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

// rpm file flags (rpmfileAttrs).
const (
	rpmFileConfig    = 1 << 0
	rpmFileNoReplace = 1 << 4
)

// TestRPM inspects the .rpm's header with Debian's rpm tool: name,
// version, arch, dependencies, files, modes, config flags, scripts; and
// checks its payload is the .deb's, byte for byte.
func TestRPM(t *testing.T) {
	needTools(t, "rpm", "dpkg-deb")
	deb, rpmFile := packages(t, testVersion)
	q := func(format string) string { return run(t, "rpm", "-qp", "--qf", format, rpmFile) }

	if got, want := q("%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}"), "sesame "+testVersion+" 1 "+rpmArch[runtime.GOARCH]+" MIT"; got != want {
		t.Errorf("header %q, want %q", got, want)
	}
	if got := strings.Fields(run(t, "rpm", "-qp", "--requires", rpmFile)); !contains(got, "iptables") || !contains(got, "procps") {
		t.Errorf("requires %v, want iptables and procps", got)
	}
	if got := strings.Fields(run(t, "rpm", "-qp", "--recommends", rpmFile)); !contains(got, "nftables") {
		t.Errorf("recommends %v, want nftables", got)
	}
	for tag, src := range map[string]string{"POSTIN": "postinstall.sh", "PREUN": "preremove.sh", "POSTUN": "postremove.sh"} {
		want := readFile(t, filepath.Join(repoRoot(t), "packaging/scripts", src))
		if got := q("%{" + tag + "}"); strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("%%{%s} is not packaging/scripts/%s:\n%s", tag, src, got)
		}
		if got := q("%{" + tag + "PROG}"); got != "/bin/sh" {
			t.Errorf("%%{%sPROG} = %q", tag, got)
		}
	}
	if got := q("%{PREIN}"); got != "(none)" {
		t.Errorf("unexpected %%pre:\n%s", got)
	}
	if got := q("%{FILEDIGESTALGO}"); got != "8" { // SHA-256
		t.Fatalf("file digests are algorithm %s, not SHA-256", got)
	}

	got := map[string]pkgFile{}
	for _, line := range strings.Split(strings.TrimRight(q("[%{FILENAMES}\t%{FILEMODES}\t%{FILEFLAGS}\t%{FILEUSERNAME}:%{FILEGROUPNAME}\t%{FILEDIGESTS}\n]"), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("rpm file line %q", line)
		}
		flags, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("flags in %q: %v", line, err)
		}
		noreplace := flags&(rpmFileConfig|rpmFileNoReplace) == rpmFileConfig|rpmFileNoReplace
		if flags&rpmFileConfig != 0 && !noreplace {
			t.Errorf("%s is %%config without noreplace: an upgrade would overwrite an edited file", f[0])
		}
		got[f[0]] = pkgFile{mode: fileMode(t, f[1]), conf: noreplace, owner: f[3], sha256: f[4]}
	}
	checkFiles(t, "rpm", got)

	// Same payload as the .deb (whose contents TestDeb checks), except
	// zsh's directory.
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	for path, f := range got {
		if !f.mode.IsRegular() || strings.HasPrefix(path, "/usr/share/licenses/") {
			continue
		}
		debPath := strings.Replace(path, "/zsh/site-functions/", "/zsh/vendor-completions/", 1)
		if sum := sha256File(t, filepath.Join(tree, debPath)); sum != f.sha256 {
			t.Errorf("%s differs between the .rpm and the .deb", path)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
