package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
)

const shipped = "../../packaging/sesame.conf"

func loadShipped(t *testing.T) ([]byte, *Doc) {
	t.Helper()
	data, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", shipped, err)
	}
	return data, doc
}

// parserKeys asks the real parser which of the key-like string
// literals in package config's source it accepts, in [options] and in a
// door. The literals are only candidates: the parser decides.
func parserKeys(t *testing.T) (options, door []string) {
	t.Helper()
	files, err := filepath.Glob("../../core/config/*.go")
	if err != nil {
		t.Fatal(err)
	}
	// Key names as package config spells them (LogFile, seq_timeout,
	// COMMAND_6), upper-cased as the parser matches them.
	ident := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	cands := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && ident.MatchString(s) {
					cands[strings.ToUpper(s)] = true
				}
			}
			return true
		})
	}
	for k := range cands {
		if _, err := config.Parse("probe", []byte("[options]\n"+k+" = x\n[d]\nsequence = 1\n")); err == nil ||
			!strings.Contains(err.Error(), "unknown option") && !strings.Contains(err.Error(), "within a door section") {
			options = append(options, k)
		}
		if _, err := config.Parse("probe", []byte("[d]\nsequence = 1\n"+k+" = x\n")); err == nil ||
			!strings.Contains(err.Error(), "unknown option") && !strings.Contains(err.Error(), "is a global option") && !strings.Contains(err.Error(), "UseSyslog") {
			door = append(door, k)
		}
	}
	sort.Strings(options)
	sort.Strings(door)
	// knockd alone has 4 global and 13 door keys (with aliases); a probe
	// that finds fewer has lost track of the parser's messages.
	if len(options) < 4 || len(door) < 13 {
		t.Fatalf("probing found only options %v and door keys %v", options, door)
	}
	return options, door
}

// TestShippedConfigDocumentsEveryKey: each key the parser takes appears in
// packaging/sesame.conf as a key line of the right section, or (knockd's
// old aliases) is named in that section's comments; and every key line
// there is one the parser takes in that section.
func TestShippedConfigDocumentsEveryKey(t *testing.T) {
	_, doc := loadShipped(t)
	options, door := parserKeys(t)
	t.Logf("parser keys: options %v, door %v", options, door)
	var optSec, doorSec *Section
	for i := range doc.Sections {
		s := &doc.Sections[i]
		if s.Name == "options" && optSec == nil {
			optSec = s
		} else if s.Name != "options" && doorSec == nil {
			doorSec = s
		}
	}
	if optSec == nil || doorSec == nil {
		t.Fatalf("%s needs an [options] section and a door", shipped)
	}
	for _, c := range []struct {
		sec  *Section
		keys []string
	}{{optSec, options}, {doorSec, door}} {
		lines := map[string]bool{}
		var prose []string
		for _, e := range c.sec.Entries {
			for _, k := range e.Keys {
				lines[strings.ToUpper(k.Key)] = true
			}
			prose = append(prose, e.Text...)
		}
		text := strings.Join(prose, " ")
		accepted := map[string]bool{}
		for _, k := range c.keys {
			accepted[k] = true
			mentioned := regexp.MustCompile(`(?i)\b` + k + `\b`).MatchString(text)
			if !lines[k] && !mentioned {
				t.Errorf("[%s]: the parser accepts %s but %s does not document it", c.sec.Name, k, shipped)
			}
		}
		for k := range lines {
			if !accepted[k] {
				t.Errorf("[%s]: %s documents %s, which the parser rejects there", c.sec.Name, shipped, k)
			}
		}
	}
}

// TestShippedConfigExamplesParse: with every documented key switched on,
// the file still parses, so no example value is wrong.
func TestShippedConfigExamplesParse(t *testing.T) {
	data, _ := loadShipped(t)
	all := Uncommented(data)
	if string(all) == string(data) {
		t.Fatal("Uncommented changed nothing: the shipped file has no commented-out keys?")
	}
	cfg, err := config.Parse(shipped+" (uncommented)", all)
	if err != nil {
		t.Fatalf("every key enabled: %v\n%s", err, all)
	}
	d := cfg.Doors[0]
	if !d.Start.Set || len(d.Open) == 0 || d.OneTimeFile == "" || !cfg.Options.UseSyslog {
		t.Errorf("uncommenting did not switch the keys on: %+v", d)
	}
}

// TestShippedConfigIsSafe: as shipped, the one door opens nothing.
func TestShippedConfigIsSafe(t *testing.T) {
	data, _ := loadShipped(t)
	cfg, err := config.Parse(shipped, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Doors) != 1 {
		t.Fatalf("%d doors, want the one example", len(cfg.Doors))
	}
	d := cfg.Doors[0]
	if d.Start.Set || d.Start6.Set || d.Stop.Set || d.Stop6.Set || len(d.Open) > 0 || d.OneTimeFile != "" {
		t.Errorf("the shipped door does something: %+v", d)
	}
	if len(cfg.Options.RescuePorts) > 0 {
		t.Errorf("the shipped config turns the rescue port on")
	}
}

// TestManPage renders sesame.conf(5) and checks every documented key and
// the frame made it into the roff.
func TestManPage(t *testing.T) {
	_, doc := loadShipped(t)
	tmpl, err := os.ReadFile("../../packaging/man/sesame.conf.5.md")
	if err != nil {
		t.Fatal(err)
	}
	md, err := Markdown(doc, tmpl, "1.2.3", time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	roff := string(Roff(md))
	for _, want := range []string{`.TH sesame.conf 5 "May 2025" "Sesame 1.2.3" "File Formats Manual"`, ".SH NAME", ".SH DOOR KEYS", ".SH SPA AUTHORIZED KEYS", `\fBsesamed\fP(8)`, `\fBfwknopd\fP(8)`} {
		if !strings.Contains(roff, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	for _, s := range doc.Sections {
		for _, e := range s.Entries {
			for _, k := range e.Keys {
				if !strings.Contains(roff, `\fB`+k.Key+`\fP`) {
					t.Errorf("man page lacks key %s", k.Key)
				}
			}
		}
	}
	// Defaults and examples apart: a key shown at its default has no
	// example; one shown with an example also states its default.
	for _, want := range []string{`Default: \fB65536\fR`, `Default: \fB25\fR`, `Example: \fBseq_timeout = 5\fR`} {
		if !strings.Contains(roff, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(roff, `Example: \fBMaxAttempts`) {
		t.Errorf("man page shows MaxAttempts' default as an example")
	}
	if strings.Contains(roff, "{{") || strings.Contains(roff, "(undocumented)") {
		t.Errorf("man page has template residue or an undocumented key:\n%s", roff)
	}
}

// TestShippedDefaultsAgreeWithTheParser: every key of the shipped file
// states its default, and each default written as a value (`25`) is
// what package config uses when the key is left out; a key line that
// shows the default shows that value.
func TestShippedDefaultsAgreeWithTheParser(t *testing.T) {
	_, doc := loadShipped(t)
	literal := regexp.MustCompile("^Default: `([^`]*)`")
	for _, s := range doc.Sections {
		global := s.Name == "options"
		for _, e := range s.Entries {
			if len(e.Keys) == 0 {
				continue
			}
			var defaults []string
			for _, p := range e.Text {
				if strings.HasPrefix(p, defaultPrefix) {
					defaults = append(defaults, p)
				}
			}
			if len(defaults) != 1 {
				t.Errorf("[%s] %s: %d \"Default:\" paragraphs, want 1", s.Name, e.Keys[0].Key, len(defaults))
				continue
			}
			m := literal.FindStringSubmatch(defaults[0])
			for _, k := range e.Keys {
				switch {
				case m != nil && !isDefault(global, k.Key, m[1], true):
					t.Errorf("[%s] %s: %q, but the parser's default is not %s = %s", s.Name, k.Key, defaults[0], k.Key, m[1])
				case isDefault(global, k.Key, k.Value, k.HasValue) && (m == nil || m[1] != k.Value):
					t.Errorf("[%s] line %d: %s = %s is the default, but the comment says %q", s.Name, k.Line, k.Key, k.Value, defaults[0])
				}
			}
		}
	}
	// The classifier itself: a default, an example, a bare key.
	for _, c := range []struct {
		global     bool
		key, value string
		want       bool
	}{{true, "MaxAttempts", "65536", true}, {true, "MaxAttempts", "100", false}, {false, "seq_timeout", "25", true},
		{false, "seq_timeout", "5", false}, {false, "cmd_timeout", "10.0", true}, {true, "Firewall", "nftables", false}} {
		if got := isDefault(c.global, c.key, c.value, true); got != c.want {
			t.Errorf("isDefault(%s = %s) = %v", c.key, c.value, got)
		}
	}
}

// TestShippedConfigWarnsBeforeSuggestingTheStateDir: purge deletes
// /var/lib/sesame, so the advice to keep one-time sequences there says so.
func TestShippedConfigWarnsBeforeSuggestingTheStateDir(t *testing.T) {
	_, doc := loadShipped(t)
	for _, s := range doc.Sections {
		for _, e := range s.Entries {
			for _, k := range e.Keys {
				if k.Key == "one_time_sequences" {
					text := strings.Join(e.Text, " ")
					if i, j := strings.Index(text, "apt purge"), strings.Index(text, "/var/lib/sesame"); i < 0 || j < 0 || !strings.Contains(text[i:], "/var/lib/sesame") {
						t.Errorf("one_time_sequences does not say that apt purge deletes /var/lib/sesame: %q", text)
					}
					if !strings.HasPrefix(k.Value, "/var/lib/sesame/") {
						t.Errorf("example %s moved; review this test", k.Value)
					}
					return
				}
			}
		}
	}
	t.Fatal("no one_time_sequences entry")
}
