package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/internal/version"
)

// manPage is sesamed(8) in markdown, written for people rather than
// generated from the flags; TestManPageDescribesEveryFlag keeps the two
// together.
//
//go:embed sesamed.8.md
var manPage string

// addGenMan gives cmd a hidden --gen-man DIR flag that writes sesamed(8)
// into DIR and exits. `make package` uses it.
func addGenMan(cmd *cobra.Command) {
	var dir string
	cmd.Flags().StringVar(&dir, "gen-man", "", "write the man page into `DIR` and exit")
	_ = cmd.Flags().MarkHidden("gen-man")
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if dir == "" {
			return run(c, args)
		}
		return genMan(dir)
	}
}

// renderMan returns sesamed(8) as roff, dated by SOURCE_DATE_EPOCH when
// set (reproducible builds), else now.
func renderMan() ([]byte, error) {
	date := time.Now()
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		s, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", e, err)
		}
		date = time.Unix(s, 0)
	}
	t, err := template.New("sesamed.8").Option("missingkey=error").Parse(manPage)
	if err != nil {
		return nil, err
	}
	var md bytes.Buffer
	if err := t.Execute(&md, map[string]string{"Version": version.Version, "Date": date.UTC().Format("January 2006")}); err != nil {
		return nil, err
	}
	return md2man.Render(md.Bytes()), nil
}

func genMan(dir string) error {
	page, err := renderMan()
	if err != nil {
		return fmt.Errorf("gen-man: %w", err)
	}
	path := filepath.Join(dir, "sesamed.8")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		return fmt.Errorf("gen-man %s: %w", path, err)
	}
	return nil
}
