package main

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Doc is a commented config file read as documentation: the comment
// block before the first section, then each section's entries.
type Doc struct {
	Intro    []string // paragraphs
	Sections []Section
}

// Section is one "[name]" section of the file.
type Section struct {
	Name    string
	Line    int
	Entries []Entry
}

// Entry is a comment block and the key lines that follow it. An entry
// with no keys is a note: prose that documents no key of its own.
type Entry struct {
	Keys []KeyLine
	Text []string // paragraphs
}

// KeyLine is a key as the file shows it, set ("key = value") or
// commented out ("#key = value", no space after '#').
type KeyLine struct {
	Key, Value string
	HasValue   bool
	Commented  bool
	Line       int
}

// keyLine matches a key line once the leading '#' of a commented-out key
// is removed. Prose comments are "# text" (or a lone "#"), so they never
// look like keys.
var keyLine = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_]*)\s*(=\s*(.*))?$`)

// Parse reads a config file in the layout packaging/sesame.conf uses:
// a blank line ends an entry, "# " lines are prose ("#" alone separates
// paragraphs), and "#key = value" or "key = value" lines are the keys
// the prose above them documents.
func Parse(data []byte) (*Doc, error) {
	d := &Doc{}
	var (
		para  []string  // words of the paragraph being read
		paras []string  // finished paragraphs of the current block
		keys  []KeyLine // key lines after the current block
		sec   *Section  // nil before the first section
		line  int
	)
	endPara := func() {
		if len(para) > 0 {
			paras = append(paras, strings.Join(para, " "))
			para = nil
		}
	}
	flush := func() {
		endPara()
		switch {
		case sec == nil:
			d.Intro = append(d.Intro, paras...)
		case len(paras) > 0 || len(keys) > 0:
			sec.Entries = append(sec.Entries, Entry{Keys: keys, Text: paras})
		}
		paras, keys = nil, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "":
			flush()
		case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
			flush()
			d.Sections = append(d.Sections, Section{Name: t[1 : len(t)-1], Line: line})
			sec = &d.Sections[len(d.Sections)-1]
		case t == "#":
			if len(keys) > 0 {
				return nil, fmt.Errorf("line %d: prose after key lines: separate entries with a blank line", line)
			}
			endPara()
		case strings.HasPrefix(t, "# "):
			if len(keys) > 0 {
				return nil, fmt.Errorf("line %d: prose after key lines: separate entries with a blank line", line)
			}
			para = append(para, strings.TrimSpace(t[2:]))
		default:
			commented := strings.HasPrefix(t, "#")
			m := keyLine.FindStringSubmatch(strings.TrimPrefix(t, "#"))
			if m == nil {
				return nil, fmt.Errorf("line %d: %q is neither prose (\"# text\") nor a key line", line, t)
			}
			if sec == nil {
				return nil, fmt.Errorf("line %d: key %s before the first section", line, m[1])
			}
			endPara()
			keys = append(keys, KeyLine{Key: m[1], Value: m[3], HasValue: m[2] != "", Commented: commented, Line: line})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	return d, nil
}

// Uncommented returns data with every commented-out key line enabled:
// the file as it would be if an admin used every documented key.
func Uncommented(data []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		t := sc.Text()
		trim := strings.TrimSpace(t)
		if strings.HasPrefix(trim, "#") && keyLine.MatchString(trim[1:]) {
			t = trim[1:]
		}
		out.WriteString(t)
		out.WriteByte('\n')
	}
	return out.Bytes()
}
