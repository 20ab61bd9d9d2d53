package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// state makes a state directory as sesamed leaves it.
func state(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	for _, d := range []string{dir, filepath.Join(dir, "stops")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"grants.journal", "lock", "last-good.conf", "stops/x.stopped"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTreeAcceptsAPrivateStateDir(t *testing.T) {
	dir := state(t)
	if err := Tree(dir); err != nil {
		t.Fatal(err)
	}
	// A 0644 file and a 0755 directory are fine: only writes matter.
	os.Chmod(filepath.Join(dir, "last-good.conf"), 0o644)
	os.Chmod(filepath.Join(dir, "stops"), 0o755)
	if err := Tree(dir); err != nil {
		t.Fatal(err)
	}
}

func TestTreeRefusesWritableByOthers(t *testing.T) {
	for _, name := range []string{"", "grants.journal", "last-good.conf", "stops", "stops/x.stopped"} {
		for _, mode := range []os.FileMode{0o620, 0o602, 0o770, 0o777} {
			dir := state(t)
			p := filepath.Join(dir, name)
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			err := Tree(dir)
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), p+" is writable by its group or others") {
				t.Errorf("%s mode %04o: %v", name, mode, err)
			}
		}
	}
}

func TestTreeRefusesSymlinks(t *testing.T) {
	dir := state(t)
	os.Symlink("/etc/passwd", filepath.Join(dir, "stops", "planted.stopped"))
	if err := Tree(dir); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink in the tree: %v", err)
	}
}

func TestPathChecksAncestorsAndLinks(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777) // not sticky: anyone could rename what is in it
	dir := filepath.Join(open, "state")
	os.Mkdir(dir, 0o700)
	if err := Path(dir); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), open+" is writable") {
		t.Errorf("under a world-writable directory: %v", err)
	}
	// Sticky, like /tmp: allowed above, never as the directory itself.
	os.Chmod(open, 0o777|os.ModeSticky)
	if err := Path(dir); err != nil {
		t.Errorf("under a sticky directory: %v", err)
	}
	if err := Path(open); !errors.Is(err, ErrUntrusted) {
		t.Errorf("a sticky world-writable directory itself: %v", err)
	}
	// A link to an untrusted place is judged by where it leads.
	link := filepath.Join(base, "link")
	os.Symlink(open, link)
	if err := Path(link); !errors.Is(err, ErrUntrusted) {
		t.Errorf("a link to a world-writable directory: %v", err)
	}
}

func TestRefusesOtherOwners(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, name := range []string{"", "grants.journal", "last-good.conf", "stops", "stops/x.stopped"} {
		dir := state(t)
		p := filepath.Join(dir, name)
		if err := os.Lchown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		err := Tree(dir)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), p+" is owned by uid 65534") {
			t.Errorf("%q owned by nobody: %v", name, err)
		}
	}
	// An ancestor owned by someone else could have the directory swapped.
	dir := state(t)
	os.Lchown(filepath.Dir(dir), 65534, 65534)
	if err := Path(dir); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), filepath.Dir(dir)) {
		t.Errorf("parent owned by nobody: %v", err)
	}
}
