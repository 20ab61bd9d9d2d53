package preflight

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sesame-knock/sesame/core/config"
)

// fileKind is a file sesamed writes, with where the shipped unit wants it.
type fileKind struct {
	name  string // "LogFile"
	place string // the directory the unit opens for it
	pid   bool   // a PidFile: refused with a second name (hard link)
}

var (
	logFile = fileKind{"LogFile", "/var/log/sesame", false}
	pidFile = fileKind{"PidFile", "/run/sesame", true}
	oneTime = fileKind{"one_time_sequences", "/var/lib/sesame", false}
	// Metrics_File is replaced by a rename from its directory: the
	// directory must be writable too, which the same checks ask.
	metricsFile = fileKind{"Metrics_File", "/var/lib/prometheus/node-exporter", false}
)

// files checks LogFile, PidFile, Metrics_File and the one-time sequence
// files.
func (c *checker) files() {
	o := c.cfg.Options
	if p := firstSet(c.opts.LogFile, o.LogFile); p != "" {
		c.writable(c.option(config.KeyLogFile, "-g", c.opts.LogFile), logFile, p)
	}
	if p := firstSet(c.opts.PidFile, o.PidFile); p != "" {
		c.writable(c.option(config.KeyPidFile, "-p", c.opts.PidFile), pidFile, p)
	}
	if p := o.MetricsFile; p != "" {
		c.writable(c.option(config.KeyMetricsFile, "", ""), metricsFile, p)
	}
	// Package config opened each one-time file for writing already; what
	// is left is whether the unit lets sesamed mark its lines.
	for _, d := range c.cfg.Doors {
		if d.OneTimeFile != "" {
			c.sandboxed(c.door(d, config.KeyOneTimeSequences), oneTime, absPath(d.OneTimeFile))
		}
	}
}

func firstSet(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// writable checks that sesamed can open p as it opens LogFile and
// PidFile: created if missing (its directory must exist), never through
// a symbolic link, a regular file, and (PidFile) with one name only.
func (c *checker) writable(w where, k fileKind, p string) {
	if !filepath.IsAbs(p) {
		c.warnf(w, "%s %s is a relative path: sesamed opens it relative to its working directory (/ under systemd); give the full path", k.name, p)
	}
	abs := absPath(p)
	fi, err := os.Lstat(abs)
	switch {
	case err == nil:
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			c.errorf(w, "%s %s is a symbolic link: sesamed never writes through one; name the file itself", k.name, p)
			return
		case !fi.Mode().IsRegular():
			c.errorf(w, "%s %s is not a regular file (%s)", k.name, p, typeName(fi.Mode()))
			return
		case k.pid && links(fi) > 1:
			c.errorf(w, "%s %s has %d names (a hard link): sesamed does not write to it", k.name, p, links(fi))
			return
		}
		if c.root {
			if err := sys.access(abs, 2); err != nil {
				c.errorf(w, "%s %s is not writable: %v", k.name, p, reason(err))
				return
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(abs)
		di, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.errorf(w, "%s %s: directory %s does not exist", k.name, p, dir)
			return
		case err != nil:
			c.warnf(w, "cannot check %s %s: %v", k.name, p, reason(err))
			return
		case !di.IsDir():
			c.errorf(w, "%s %s: %s is not a directory", k.name, p, dir)
			return
		}
		if c.root {
			if err := sys.access(dir, 2|1); err != nil {
				c.errorf(w, "%s %s cannot be created: directory %s is not writable: %v", k.name, p, dir, reason(err))
				return
			}
		}
	default:
		c.warnf(w, "cannot check %s %s: %v", k.name, p, reason(err))
		return
	}
	c.sandboxed(w, k, abs)
}

// sandboxed checks that the unit sesamed runs under lets it write p.
func (c *checker) sandboxed(w where, k fileKind, p string) {
	sb := c.opts.Sandbox
	if sb == nil {
		return
	}
	ok, private, why := sb.Writable(p)
	if private {
		c.warnf(w, "%s %s is in the private %s of %s: only sesamed sees it", k.name, p, firstDir(p), sb.Name())
		return
	}
	if ok {
		return
	}
	allow := filepath.Dir(resolveDirs(p)) // a log or pid file may be created and rotated
	if k == oneTime {
		allow = resolveDirs(p) // it exists, and only its lines change
	}
	c.errorf(w, "%s %s is %s under %s, which lets sesamed write only to %s: use a path below %s (%s = %s), or allow this one with `systemctl edit sesamed` and the lines\n\t[Service]\n\tReadWritePaths=%s",
		k.name, p, why, sb.Name(), strings.Join(sb.WritablePlaces(), ", "), k.place, k.name, filepath.Join(k.place, filepath.Base(p)), allow)
}

func firstDir(p string) string {
	if strings.HasPrefix(p, "/var/tmp/") {
		return "/var/tmp"
	}
	if strings.HasPrefix(p, "/tmp/") {
		return "/tmp"
	}
	return filepath.Dir(p)
}

// stateDir checks what the start checks of the state directory: when it
// exists, that only root can have written it (package trust).
func (c *checker) stateDir() {
	dir := c.opts.StateDir
	if dir == "" {
		return
	}
	if sb := c.opts.Sandbox; sb != nil {
		if ok, _, why := sb.Writable(filepath.Join(absPath(dir), "journal")); !ok {
			c.r.Errors = append(c.r.Errors, &config.Error{File: "command line", Msg: "--state-dir " + dir + ": " + why + " under " + sb.Name() + " (its StateDirectory= is /var/lib/sesame)"})
			return
		}
	}
	if !c.root {
		return
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return // sesamed creates it, 0700
	}
	if err := sys.trustTree(dir); err != nil {
		c.r.Errors = append(c.r.Errors, &config.Error{File: "state directory " + dir, Msg: err.Error()})
	}
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// reason is an error's errno text when it has one ("read-only file
// system"), else the error.
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
