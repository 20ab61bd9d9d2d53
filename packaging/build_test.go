// Package packaging holds the tests of Sesame's packages: it builds the
// .deb and .rpm with `make package` (nfpm.yaml), inspects them with
// dpkg-deb and rpm, verifies the systemd unit, and installs, upgrades and
// purges the .deb under a real systemd in a throw-away root. The files
// it tests live beside it (sesamed.service, sesame.conf, scripts/).
package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Built packages live for the whole test binary: building takes seconds
// warm and the install test needs two versions.
var (
	buildRoot string
	buildMu   sync.Mutex
	builds    = map[string]*build{}
)

type build struct {
	once     sync.Once
	deb, rpm string
	err      error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sesame-pkgtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the directory holding nfpm.yaml and the Makefile.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "nfpm.yaml")); err != nil {
		t.Fatalf("no nfpm.yaml in %s: %v", root, err)
	}
	return root
}

// needTools fails (not skips) when a tool is missing: `make deps`
// installs them, and CI runs it.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make deps installs it): %v", tool, err)
		}
	}
}

// packages builds (once per version) the .deb and .rpm exactly as the
// README says, `make package`, with VERSION and DIST set, and returns
// their paths.
func packages(t testing.TB, version string) (deb, rpm string) {
	t.Helper()
	needTools(t, "make", "git", "gzip")
	buildMu.Lock()
	b := builds[version]
	if b == nil {
		b = &build{}
		builds[version] = b
	}
	buildMu.Unlock()
	b.once.Do(func() {
		dist := filepath.Join(buildRoot, version)
		cmd := exec.Command("make", "-C", repoRoot(t), "package", "VERSION="+version, "DIST="+dist)
		cmd.Env = append(os.Environ(), "GOARCH="+runtime.GOARCH)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("make package VERSION=%s: %v\n%s", version, err, out.String())
			return
		}
		debs, _ := filepath.Glob(filepath.Join(dist, "sesame_*.deb"))
		rpms, _ := filepath.Glob(filepath.Join(dist, "sesame-*.rpm"))
		if len(debs) != 1 || len(rpms) != 1 {
			b.err = fmt.Errorf("make package left debs %v and rpms %v in %s, want one of each", debs, rpms, dist)
			return
		}
		b.deb, b.rpm = debs[0], rpms[0]
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.deb, b.rpm
}

// run runs argv and returns its stdout; stderr goes into the error.
func run(t testing.TB, argv ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s%s", argv, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
