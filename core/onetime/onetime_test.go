package onetime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestConsumeMarksTheUsedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seqs")
	// An unparsable line before the sequences: knockd 0.8 then marks a
	// stale offset and can leave a used sequence live.
	orig := "# header\n junk,line\n 1111\n\n 2222:udp,3333\n4444\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	steps := []struct {
		seq  string
		line int
		file string // content after Consume
	}{
		{"1111:tcp", 3, "# header\n junk,line\n#1111\n\n 2222:udp,3333\n4444\n"},
		{"2222:udp,3333:tcp", 5, "# header\n junk,line\n#1111\n\n#2222:udp,3333\n4444\n"},
		// No leading space: knockd overwrites the first digit; so do we,
		// which keeps files interchangeable.
		{"4444:tcp", 6, "# header\n junk,line\n#1111\n\n#2222:udp,3333\n#444\n"},
	}
	for _, s := range steps {
		if got := knock.FormatSequence(f.Current()); got != s.seq || f.Line() != s.line {
			t.Fatalf("current = %s at line %d, want %s at %d", got, f.Line(), s.seq, s.line)
		}
		err := f.Consume()
		data, _ := os.ReadFile(path)
		if string(data) != s.file {
			t.Fatalf("after consuming %s file is %q, want %q", s.seq, data, s.file)
		}
		if s.seq == "4444:tcp" {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("last consume: err = %v, want ErrExhausted", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if f.Current() != nil {
		t.Errorf("exhausted file still has %v", f.Current())
	}
	if err := f.Consume(); !errors.Is(err, ErrExhausted) {
		t.Errorf("consume when exhausted: %v", err)
	}
	// Reopening sees the same state: the marks were written through.
	g, err := Open(path)
	if !errors.Is(err, ErrExhausted) {
		t.Errorf("reopen: err = %v", err)
	}
	if g != nil {
		g.Close()
	}
}

func TestIdenticalSequencesMarkInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seqs")
	os.WriteFile(path, []byte(" 1111\n 1111\n"), 0o600)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Consume(); err != nil {
		t.Fatal(err)
	}
	if f.Line() != 2 {
		t.Errorf("after first use current line = %d, want 2", f.Line())
	}
	data, _ := os.ReadFile(path)
	if string(data) != "#1111\n 1111\n" {
		t.Errorf("file %q", data)
	}
}

// A symlink is refused: whoever can replace it would choose the file
// root marks, and where Sesame reads its sequences from.
func TestOpenRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.WriteFile(real, []byte(" 1111\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	f, err := Open(link)
	if err == nil {
		f.Close()
		t.Fatal("opened a one-time file through a symlink")
	}
	if f != nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open = %v, %v; want nil and an error saying it is a symbolic link", f, err)
	}
	if b, _ := os.ReadFile(real); string(b) != " 1111\n" {
		t.Errorf("target changed: %q", b)
	}
}
