package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each page of sesame gen-man is titled for its own command.
func TestManPagesTitledForTheirCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"gen-man", dir}, &out, &errOut); code != 0 {
		t.Fatalf("gen-man: exit %d: %s", code, errOut.String())
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if len(pages) < 8 {
		t.Fatalf("pages %v", pages)
	}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(p), ".1")
		want := `.TH "` + strings.ToUpper(name) + `" "1"`
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s: no %s in %.200q", filepath.Base(p), want, b)
		}
	}
}
