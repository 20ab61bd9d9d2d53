package event

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestREADMEListsEveryKind keeps the README's list of SESAME_EVENT values
// true: every Kind constant declared in event.go is in it, and nothing
// else is.
func TestREADMEListsEveryKind(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
				continue
			}
			for _, v := range vs.Values {
				s, err := strconv.Unquote(v.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				kinds[s] = true
			}
		}
	}
	if len(kinds) < 10 {
		t.Fatalf("found only %d kinds in event.go: the parse is wrong", len(kinds))
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("fields `SESAME_EVENT` \\(([^)]*)\\)").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no \"fields `SESAME_EVENT` (...)\" list")
	}
	listed := map[string]bool{}
	for _, k := range strings.Split(strings.Join(strings.Fields(string(m[1])), " "), ",") {
		listed[strings.TrimSpace(k)] = true
	}
	for k := range kinds {
		if !listed[k] {
			t.Errorf("README's SESAME_EVENT list lacks %s", k)
		}
	}
	for k := range listed {
		if !kinds[k] {
			t.Errorf("README's SESAME_EVENT list has %q, which is no Kind", k)
		}
	}
}
