package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPidFileIsNotWrittenThroughLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "shadow")
	os.WriteFile(victim, []byte("root:secret\n"), 0o600)
	untouched := func(t *testing.T) {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
			t.Fatalf("the linked file changed: %q", b)
		}
	}

	sym := filepath.Join(dir, "sym.pid")
	os.Symlink(victim, sym)
	if err := writePidFile(sym, 42); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v", err)
	}
	untouched(t)

	hard := filepath.Join(dir, "hard.pid")
	if err := os.Link(victim, hard); err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(hard, 42); err == nil || !strings.Contains(err.Error(), "hard link") {
		t.Errorf("hard link: %v", err)
	}
	untouched(t)

	fifo := filepath.Join(dir, "fifo.pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Refused, and without blocking on a reader.
	if err := writePidFile(fifo, 42); err == nil {
		t.Error("wrote a pid into a fifo")
	}

	// A stale, longer pid file is replaced whole.
	plain := filepath.Join(dir, "sesamed.pid")
	os.WriteFile(plain, []byte("1234567\n"), 0o644)
	if err := writePidFile(plain, 42); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "42\n" {
		t.Errorf("pid file %q, want \"42\\n\"", b)
	}
}
