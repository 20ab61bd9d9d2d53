// Command confman writes sesame.conf(5) from the shipped, commented
// packaging/sesame.conf and a markdown frame, so the keys are documented
// in one place: the comments admins read in /etc/sesame/sesame.conf.
// `make package` runs it; it is not installed.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "confman:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("confman", flag.ContinueOnError)
	conf := fs.String("conf", "packaging/sesame.conf", "the commented config `FILE`")
	frame := fs.String("template", "packaging/man/sesame.conf.5.md", "the markdown frame (text/template)")
	version := fs.String("version", "dev", "the version printed in the footer")
	out := fs.String("o", "-", "write the page to `FILE` (- for stdout)")
	md := fs.Bool("md", false, "write markdown instead of roff")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*conf)
	if err != nil {
		return err
	}
	doc, err := Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *conf, err)
	}
	tmpl, err := os.ReadFile(*frame)
	if err != nil {
		return err
	}
	date, err := buildDate(os.Getenv("SOURCE_DATE_EPOCH"), time.Now())
	if err != nil {
		return err
	}
	page, err := Markdown(doc, tmpl, *version, date)
	if err != nil {
		return err
	}
	if !*md {
		page = Roff(page)
	}
	if *out == "-" {
		_, err = stdout.Write(page)
		return err
	}
	return os.WriteFile(*out, page, 0o644)
}

// buildDate honours SOURCE_DATE_EPOCH (reproducible builds), as cobra's
// man pages and nfpm do.
func buildDate(epoch string, now time.Time) (time.Time, error) {
	if epoch == "" {
		return now, nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	return time.Unix(s, 0), nil
}
