package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The hand-written sesamed(8) describes every flag the command line
// takes, in the sections a man page has, and renders without warnings.
func TestManPageDescribesEveryFlag(t *testing.T) {
	var help, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &help, &errOut); err != nil {
		t.Fatalf("--help: %v: %s", err, errOut.String())
	}
	// "  -c, --config FILE   read ..." and "      --check   check ..."
	flagRE := regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([a-z0-9-]+)`)
	flags := flagRE.FindAllStringSubmatch(help.String(), -1)
	if len(flags) < 14 {
		t.Fatalf("found %d flags in --help:\n%s", len(flags), help.String())
	}
	page := manPage
	opts := page[strings.Index(page, "# OPTIONS"):strings.Index(page, "# EXIT STATUS")]
	for _, f := range flags {
		short, long := f[1], f[2]
		if long == "gen-man" {
			t.Errorf("hidden --gen-man shows in --help")
		}
		want := "**--" + long + "**"
		if short != "" {
			want = "**-" + short + "**, " + want
		}
		if !strings.Contains(opts, "\n"+want) {
			t.Errorf("OPTIONS does not describe %s", want)
		}
	}
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SIGNALS", "FILES", "EXAMPLES", "SEE ALSO"} {
		if !strings.Contains(page, "\n# "+s+"\n") {
			t.Errorf("no %s section", s)
		}
	}

	roff, err := renderMan()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"[=false]", "{{", "gen-man"} {
		if bytes.Contains(roff, []byte(bad)) {
			t.Errorf("the page has %q", bad)
		}
	}
	if !bytes.HasPrefix(roff, []byte(".nh\n.TH SESAMED 8 ")) {
		t.Errorf("page starts %.60q", roff)
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Logf("man not installed (make deps installs man-db): not rendering")
		return
	}
	path := filepath.Join(t.TempDir(), "sesamed.8")
	os.WriteFile(path, roff, 0o644)
	cmd := exec.Command("man", "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	out = regexp.MustCompile(".\b").ReplaceAll(out, nil) // overstrike bold and underline
	if err != nil || stderr.Len() > 0 || !bytes.Contains(out, []byte("EXIT STATUS")) {
		t.Errorf("man -l: %v\n%s\n%.300q", err, stderr.String(), out)
	}
}
