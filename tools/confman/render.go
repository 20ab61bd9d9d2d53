package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// Page is what the man page template sees.
type Page struct {
	Version, Date string
	Intro         string // markdown
	Options       string // markdown definition list of the [options] keys
	Doors         string // the same for the first door section
	DoorName      string
}

// Markdown fills the template with doc's text.
func Markdown(doc *Doc, tmpl []byte, version string, date time.Time) ([]byte, error) {
	p := Page{Version: version, Date: date.UTC().Format("January 2006")}
	var paras []string
	for _, t := range doc.Intro {
		paras = append(paras, escape(t))
	}
	p.Intro = strings.Join(paras, "\n\n")
	for _, s := range doc.Sections {
		switch {
		case s.Name == "options" && p.Options == "":
			p.Options = entries(s.Entries, true)
		case s.Name != "options" && p.Doors == "":
			p.Doors, p.DoorName = entries(s.Entries, false), s.Name
		}
	}
	if p.Options == "" || p.Doors == "" {
		return nil, fmt.Errorf("confman: the config needs an [options] section and a door, both with keys")
	}
	t, err := template.New("man").Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		return nil, fmt.Errorf("confman: template: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, p); err != nil {
		return nil, fmt.Errorf("confman: template: %w", err)
	}
	return out.Bytes(), nil
}

// Roff renders markdown as a man page.
func Roff(md []byte) []byte { return md2man.Render(md) }

// entries writes a definition list: the keys as the term, the comment
// paragraphs as the definition, and last what the shipped file's key
// lines show, told apart: its default (the "Default:" paragraph) or an
// example. Notes become plain paragraphs.
func entries(es []Entry, global bool) string {
	var b strings.Builder
	for _, e := range es {
		if len(e.Keys) == 0 {
			for _, t := range e.Text {
				fmt.Fprintf(&b, "%s\n\n", escape(t))
			}
			continue
		}
		var terms, examples []string
		for _, k := range e.Keys {
			terms = append(terms, "**"+escape(k.Key)+"**")
			if isDefault(global, k.Key, k.Value, k.HasValue) {
				continue
			}
			ex := k.Key
			if k.HasValue {
				ex += " = " + k.Value
			}
			examples = append(examples, "`"+ex+"`")
		}
		b.WriteString(strings.Join(terms, ", "))
		b.WriteString("\n")
		var defaults []string
		n := 0
		for _, t := range e.Text {
			if strings.HasPrefix(t, defaultPrefix) {
				defaults = append(defaults, t)
				continue
			}
			if n > 0 {
				b.WriteString("\n")
			}
			n++
			fmt.Fprintf(&b, ":   %s\n", escape(t))
		}
		if n == 0 {
			b.WriteString(":   (undocumented)\n")
		}
		for _, d := range defaults {
			fmt.Fprintf(&b, "\n:   %s\n", escape(d))
		}
		if len(examples) > 0 {
			fmt.Fprintf(&b, "\n:   Example: %s.\n", strings.Join(examples, ", "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// escape backslash-escapes markdown's inline markup outside `code`
// spans, so %IP%, one_time_sequences and [options] print as written.
func escape(s string) string {
	var b strings.Builder
	code := false
	for _, r := range s {
		if r == '`' {
			code = !code
		} else if !code && strings.ContainsRune(`\*_[]<>#!`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
