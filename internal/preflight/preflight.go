package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sesame-knock/sesame/core/config"
)

// Options are what sesamed is given besides its config.
type Options struct {
	// Interfaces, LogFile and PidFile are the command line's -i, -g and
	// -p, which win over the config's Interface, LogFile and PidFile.
	Interfaces       []string
	LogFile, PidFile string
	// StateDir is sesamed's --state-dir; "" leaves it unchecked.
	StateDir string
	// Sandbox is the systemd unit sesamed will run under (InstalledUnit,
	// LoadUnit); nil checks the file system as it is.
	Sandbox *Sandbox
}

// Report is what Check found.
type Report struct {
	// Errors would stop sesamed at start, or leave a file it was asked
	// to write unwritten. Each is a *config.Error naming the config file
	// and the line to blame (line 0 when a default is, "command line"
	// for a flag), or, for the state directory, a plain error.
	Errors []error
	// Warnings are "file:line: text": what works but may not be what
	// was meant, or may become true later (an interface not up yet). The
	// config's own warnings come first.
	Warnings []string
	// Notes say what the start will pick by itself: the interfaces of
	// the default route, the firewall Firewall = auto finds.
	Notes []string
	// Interfaces are what sesamed captures on: -i, else the config's
	// Interface, else the interfaces of the default routes, else eth0
	// (knockd's default). sesamed's start takes them from here, so the
	// check and the daemon never disagree on them.
	Interfaces []string
}

// Err joins the errors; nil when there are none.
func (r *Report) Err() error { return errors.Join(r.Errors...) }

// Load reads and parses the config at path (package config, which also
// opens its one-time sequence files) and checks it. Outcomes: a config
// that does not load has a nil *config.Config and only its parse errors
// in the report; otherwise the config and what Check found.
func Load(ctx context.Context, path string, opts Options) (*config.Config, *Report) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &Report{Errors: unjoin(err)}
	}
	return cfg, Check(ctx, cfg, opts)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Check checks what sesamed will need at start from cfg and opts. It
// changes nothing. Without root (sesamed runs as root) it checks what
// it can and says what it could not.
func Check(ctx context.Context, cfg *config.Config, opts Options) *Report {
	c := &checker{cfg: cfg, opts: opts, r: &Report{Warnings: slices.Clone(cfg.Warnings)}, root: sys.euid() == 0}
	if !c.root {
		c.r.Warnings = append(c.r.Warnings, "not running as root: write permissions, the state directory and the firewall were not checked (sesamed runs as root)")
	}
	c.files()
	c.spa()
	c.interfaces()
	c.firewall(ctx)
	c.fleet(ctx)
	c.stateDir()
	c.knockd()
	return c.r
}

type checker struct {
	cfg  *config.Config
	opts Options
	r    *Report
	root bool
}

// where names what set a value: a line of the config, or a flag.
type where struct {
	file string
	line int
	flag string // "-g PATH" when the command line set it
}

// option says where the global key k came from: flag (with its value)
// when override is set, else the config's line (0: left at its default).
func (c *checker) option(k config.Key, flag, override string) where {
	if override != "" {
		return where{file: "command line", flag: flag + " " + override}
	}
	return where{file: c.cfg.File, line: c.cfg.Options.Lines.Of(k)}
}

func (c *checker) door(d *config.Door, k config.Key) where {
	return where{file: d.File, line: d.KeyLine(k)}
}

func (c *checker) errorf(w where, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if w.flag != "" {
		msg = w.flag + ": " + msg
	}
	c.r.Errors = append(c.r.Errors, &config.Error{File: w.file, Line: w.line, Msg: msg})
}

func (c *checker) warnf(w where, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if w.flag != "" {
		msg = w.flag + ": " + msg
	}
	c.r.Warnings = append(c.r.Warnings, (&config.Error{File: w.file, Line: w.line, Msg: msg}).Error())
}

func (c *checker) notef(format string, args ...any) {
	c.r.Notes = append(c.r.Notes, fmt.Sprintf(format, args...))
}
