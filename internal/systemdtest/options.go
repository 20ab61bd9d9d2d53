package systemdtest

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// TargetName is the unit systemd boots into. It wants systemd-journald and
// Options.Start, and has DefaultDependencies=no.
const TargetName = "sesame-test.target"

// FileSpec is a file placed inside the namespace before systemd starts.
type FileSpec struct {
	// Content is the file's bytes; ignored when Source is set.
	Content []byte
	// Source is a host path copied in, e.g. a binary the test built (the
	// host's /tmp is hidden inside the namespace).
	Source string
	// Mode is the file's permission bits (default: the Source's, or 0644).
	Mode fs.FileMode
}

// Options describe the system to boot. Zero values pick the defaults.
type Options struct {
	// Units maps a unit file name ("sesamed.service") or a drop-in
	// ("sesamed.service.d/override.conf") to its text; they are installed
	// in /run/systemd/system inside the namespace.
	Units map[string]string
	// Start lists units the boot target wants and orders itself after, so
	// Boot returns once they are up (and fails if they fail).
	Start []string
	// Files maps absolute paths inside the namespace (e.g.
	// /etc/sesame/knockd.conf, /usr/local/bin/sesamed) to their content.
	// The whole root is copy-on-write, so any path outside /proc, /sys and
	// /dev works and the host's copy is never touched.
	Files map[string]FileSpec
	// BootTimeout bounds the boot (default 60s).
	BootTimeout time.Duration
	// CommandTimeout bounds each Run, Systemctl and Journalctl (default 30s).
	CommandTimeout time.Duration
	// PoweroffTimeout bounds the clean shutdown before the harness kills
	// the namespace's init by PID (default 60s).
	PoweroffTimeout time.Duration
	// LogLevel is systemd's --log-level (default "info"; "debug" helps
	// when a unit misbehaves).
	LogLevel string
}

func (o *Options) setDefaults() {
	if o.BootTimeout <= 0 {
		o.BootTimeout = 60 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.PoweroffTimeout <= 0 {
		o.PoweroffTimeout = 60 * time.Second
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
}

// validate rejects names and paths that could escape their directory or
// land on an API filesystem.
func (o *Options) validate() error {
	for name := range o.Units {
		if err := validUnitPath(name); err != nil {
			return err
		}
	}
	for _, name := range o.Start {
		if strings.ContainsAny(name, "/ \n'\"\\") || name == "" {
			return fmt.Errorf("systemdtest: bad unit name %q in Start", name)
		}
	}
	for p, f := range o.Files {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") {
			return fmt.Errorf("systemdtest: file path %q must be absolute and clean", p)
		}
		for _, api := range []string{"/proc", "/sys", "/dev"} {
			if p == api || strings.HasPrefix(p, api+"/") {
				return fmt.Errorf("systemdtest: file path %q is on an API filesystem", p)
			}
		}
		if f.Mode&^fs.ModePerm != 0 {
			return fmt.Errorf("systemdtest: file %q: mode %v has more than permission bits", p, f.Mode)
		}
	}
	return nil
}

func validUnitPath(name string) error {
	bad := fmt.Errorf("systemdtest: unit %q must be a unit name or unit.d/file.conf", name)
	if name == "" || strings.ContainsAny(name, "\x00\n\\") || path.Clean(name) != name || path.IsAbs(name) {
		return bad
	}
	parts := strings.Split(name, "/")
	switch {
	case len(parts) > 2, parts[0] == "." || parts[0] == "..":
		return bad
	case len(parts) == 2 && (!strings.HasSuffix(parts[0], ".d") || parts[1] == ".."):
		return bad
	case len(parts) == 1 && parts[0] == TargetName:
		return fmt.Errorf("systemdtest: unit %s is the harness's own target", TargetName)
	}
	return nil
}

// targetUnit is the boot target's text.
func targetUnit(start []string) string {
	wants := strings.Join(append([]string{"systemd-journald.socket", "systemd-journald.service"}, start...), " ")
	return "[Unit]\nDescription=Sesame systemdtest boot target\nDefaultDependencies=no\n" +
		"Wants=" + wants + "\nAfter=" + wants + "\nAllowIsolate=yes\n"
}
