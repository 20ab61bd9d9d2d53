package access

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Config is a parsed access.conf.
type Config struct {
	Stanzas []*Stanza
	// Warnings are "file:line: text" notes on what works but deserves a
	// look (what fwknopd also only warns about).
	Warnings []string
}

// Error is a problem at a line of an access file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxIncludeDepth is fwknopd's MAX_DEPTH for %include nesting.
const maxIncludeDepth = 3

// maxErrors bounds how many problems one parse reports.
const maxErrors = 50

// Load reads path: an access.conf file, or a directory whose *.conf files
// are read in name order (fwknopd's --access-folder). The error, when
// not nil, joins one *Error per problem found.
func Load(path string) (*Config, error) {
	p := newParser()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("access.Load: %w", err)
	}
	if fi.IsDir() {
		p.folder(path, path, 0, 0)
	} else {
		p.file(path, path, 0, 0)
	}
	return p.finish(path)
}

// Parse reads one access.conf held in text, as if read from the file
// name (which errors carry; %include paths are relative to its
// directory).
func Parse(name string, text []byte) (*Config, error) {
	p := newParser()
	p.text(name, text, 0)
	return p.finish(name)
}

type parser struct {
	cfg  Config
	errs []error
	loc  *time.Location // ACCESS_EXPIRE dates are local, as fwknopd's mktime
}

func newParser() *parser { return &parser{loc: time.Local} }

func (p *parser) errorf(file string, line int, format string, args ...any) {
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *parser) finish(name string) (*Config, error) {
	if len(p.errs) == 0 && len(p.cfg.Stanzas) == 0 {
		p.errs = append(p.errs, fmt.Errorf("%s: no SOURCE stanza", name))
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &p.cfg, nil
}

// folder reads dir's *.conf files in name order.
func (p *parser) folder(dir, from string, line, depth int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		p.errorf(from, line, "access folder: %v", err)
		return
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p.file(filepath.Join(dir, n), from, line, depth)
	}
}

func (p *parser) file(path, from string, line, depth int) {
	text, err := os.ReadFile(path)
	if err != nil {
		p.errorf(from, line, "%v", err)
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: mode %04o: it holds keys, make it 0600 (fwknopd warns too)", path, fi.Mode().Perm()))
	}
	p.text(path, text, depth)
}

// line is one "VAR VALUE" line.
type line struct {
	file string
	n    int
	key  string
	raw  string // the value up to ';' or the end of the line, untrimmed
	val  string // raw without trailing blanks
}

// lines splits an access file as fwknopd's sscanf("%s %[^;\n\r]") does:
// a name, blanks, and a value that ends at ';' or the end of the line.
// Lines starting with '#' or ';' and blank lines are skipped.
func (p *parser) lines(name string, text []byte) []line {
	var out []line
	for i, l := range bytes.Split(text, []byte("\n")) {
		s := strings.TrimRight(string(l), "\r")
		t := strings.TrimLeft(s, " \t")
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		key, rest := t, ""
		if j := strings.IndexAny(t, " \t"); j >= 0 {
			key, rest = t[:j], strings.TrimLeft(t[j:], " \t")
		}
		if j := strings.IndexByte(rest, ';'); j >= 0 {
			rest = rest[:j]
		}
		key = strings.TrimSuffix(key, ":")
		l := line{file: name, n: i + 1, key: key, raw: rest, val: strings.TrimRight(rest, " \t")}
		if l.val == "" {
			p.errorf(name, l.n, "%s: missing value", key)
			continue
		}
		out = append(out, l)
	}
	return out
}

// text parses one file's lines. Stanzas are per file, as in fwknopd: the
// lines after an %include continue the including file's stanza.
func (p *parser) text(name string, text []byte, depth int) {
	var cur *building
	end := func() {
		if cur != nil {
			p.finishStanza(cur)
			cur = nil
		}
	}
	for _, l := range p.lines(name, text) {
		switch l.key {
		case "%include", "%include_folder":
			if depth >= maxIncludeDepth {
				p.errorf(name, l.n, "%s: more than %d levels of includes", l.key, maxIncludeDepth)
				continue
			}
			path := resolve(name, l.val)
			if l.key == "%include" {
				p.file(path, name, l.n, depth+1)
			} else {
				p.folder(path, name, l.n, depth+1)
			}
			continue
		case "SOURCE":
			end()
			st := &Stanza{Num: len(p.cfg.Stanzas) + 1, File: name, Line: l.n}
			p.cfg.Stanzas = append(p.cfg.Stanzas, st)
			cur = &building{st: st}
			if st.Source = p.addrs(l); st.Source == nil {
				cur.bad = true
			}
			continue
		}
		if cur == nil {
			p.errorf(name, l.n, "%s before the first SOURCE line", l.key)
			continue
		}
		if l.key == "%include_keys" {
			p.includeKeys(cur, l)
			continue
		}
		p.set(cur, l, false)
	}
	end()
}

func resolve(from, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(from), path)
}

// building is a stanza being read, with what finishStanza checks.
type building struct {
	st        *Stanza
	key, hmac line // the lines that set them (zero: unset)
	hmacType  bool
	bad       bool // an error was reported; skip the stanza checks
}

// includeKeys reads fwknopd's %include_keys file: only key lines.
func (p *parser) includeKeys(b *building, at line) {
	path := resolve(at.file, at.val)
	text, err := os.ReadFile(path)
	if err != nil {
		p.errorf(at.file, at.n, "%%include_keys: %v", err)
		b.bad = true
		return
	}
	for _, l := range p.lines(path, text) {
		p.set(b, l, true)
	}
}
