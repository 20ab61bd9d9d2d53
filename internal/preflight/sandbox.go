package preflight

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Sandbox is what a systemd unit lets its service write, read from the
// settings of systemd.exec(5) that decide it: ProtectSystem=,
// ProtectHome=, PrivateTmp=, ReadWritePaths=, ReadOnlyPaths=,
// InaccessiblePaths= and the StateDirectory=, RuntimeDirectory=,
// LogsDirectory= and CacheDirectory= the unit makes writable. It models
// systemd 252 (Debian 12): the deepest path that has a rule decides, and
// a path listed with a leading "-" that does not exist when the service
// starts is left out.
type Sandbox struct {
	// Files are the unit file and its drop-ins, in the order read.
	Files []string

	protectSystem string // "", "yes", "full" or "strict"
	protectHome   string // "", "yes", "read-only" or "tmpfs"
	privateTmp    bool
	rw, ro, hide  []pathEntry
	// dirs are the StateDirectory= (and the like) paths, made writable.
	dirs []string
	// exists is os.Stat's answer; tests swap it.
	exists func(string) bool
}

type pathEntry struct {
	path     string
	optional bool // "-": ignored when missing
}

// UnitName is sesamed's unit.
const UnitName = "sesamed.service"

// unitDirs are where systemd looks for units, in order of precedence.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// InstalledUnit reads the installed sesamed.service with its drop-ins.
// Outcomes: (nil, nil) when no such unit is installed (sesamed then runs
// without a sandbox, as far as anyone can tell); an error when a file
// cannot be read.
func InstalledUnit() (*Sandbox, error) { return installedUnit("/") }

func installedUnit(root string) (*Sandbox, error) {
	var unit string
	for _, d := range unitDirs {
		p := filepath.Join(root, d, UnitName)
		if _, err := os.Stat(p); err == nil {
			unit = p
			break
		}
	}
	if unit == "" {
		return nil, nil
	}
	// Drop-ins: every *.conf in UNIT.d of every unit directory; of two
	// with one name, the one in the directory of higher precedence.
	byName := map[string]string{}
	for i := len(unitDirs) - 1; i >= 0; i-- {
		ms, _ := filepath.Glob(filepath.Join(root, unitDirs[i], UnitName+".d", "*.conf"))
		for _, m := range ms {
			byName[filepath.Base(m)] = m
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	files := []string{unit}
	for _, n := range names {
		files = append(files, byName[n])
	}
	return LoadUnit(files...)
}

// LoadUnit reads a unit file and then its drop-ins, in order.
func LoadUnit(files ...string) (*Sandbox, error) {
	s := &Sandbox{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("preflight: unit: %w", err)
		}
		s.parse(data)
		s.Files = append(s.Files, f)
	}
	return s, nil
}

// ParseUnit reads unit text (a unit file followed by its drop-ins),
// naming it name in messages.
func ParseUnit(name string, texts ...[]byte) *Sandbox {
	s := &Sandbox{Files: []string{name}}
	for _, t := range texts {
		s.parse(t)
	}
	return s
}

// parse applies the [Service] settings of one unit file or drop-in. An
// empty assignment resets a list, as in systemd.
func (s *Sandbox) parse(data []byte) {
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var cont strings.Builder
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (l == "" || l[0] == '#' || l[0] == ';') {
			continue
		}
		// A trailing backslash continues the line.
		if strings.HasSuffix(l, `\`) {
			cont.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		if cont.Len() > 0 {
			l = cont.String() + l
			cont.Reset()
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = l[1 : len(l)-1]
			continue
		}
		if section != "Service" {
			continue
		}
		key, val, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "ProtectSystem":
			s.protectSystem = normBool(val, "full", "strict")
		case "ProtectHome":
			s.protectHome = normBool(val, "read-only", "tmpfs")
		case "PrivateTmp":
			s.privateTmp = normBool(val) == "yes"
		case "ReadWritePaths":
			s.rw = paths(s.rw, val)
		case "ReadOnlyPaths":
			s.ro = paths(s.ro, val)
		case "InaccessiblePaths":
			s.hide = paths(s.hide, val)
		case "StateDirectory":
			s.dirs = dirs(s.dirs, "/var/lib", val)
		case "RuntimeDirectory":
			s.dirs = dirs(s.dirs, "/run", val)
		case "LogsDirectory":
			s.dirs = dirs(s.dirs, "/var/log", val)
		case "CacheDirectory":
			s.dirs = dirs(s.dirs, "/var/cache", val)
		}
	}
}

// normBool turns systemd's booleans into "yes" or "", and keeps the
// other words a setting takes.
func normBool(v string, words ...string) string {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return "yes"
	}
	for _, w := range words {
		if v == w {
			return w
		}
	}
	return ""
}

func paths(list []pathEntry, val string) []pathEntry {
	if val == "" {
		return nil
	}
	for _, f := range strings.Fields(val) {
		f = strings.Trim(f, `"'`)
		e := pathEntry{}
		// "-" ignores a missing path; "+" is relative to RootDirectory=,
		// which sesamed's unit does not set.
		for len(f) > 0 && (f[0] == '-' || f[0] == '+') {
			if f[0] == '-' {
				e.optional = true
			}
			f = f[1:]
		}
		if path.IsAbs(f) {
			e.path = path.Clean(f)
			list = append(list, e)
		}
	}
	return list
}

func dirs(list []string, base, val string) []string {
	if val == "" {
		return nil
	}
	for _, f := range strings.Fields(val) {
		// "sesame:alias" forms name a symlink; the first part is the dir.
		f, _, _ = strings.Cut(f, ":")
		list = append(list, path.Join(base, f))
	}
	return list
}

// perm is what a sandbox lets a service do at a path.
type perm int

const (
	accessRW      perm = iota
	accessPrivate      // writable, but a private tmpfs only the service sees
	accessRO
	accessHidden
)

// rule is one path's access and the setting that decided it.
type rule struct {
	path    string
	access  perm
	setting string
}

// rules lists every path a setting decides, base rules first.
func (s *Sandbox) rules() []rule {
	var rs []rule
	switch s.protectSystem {
	case "strict":
		rs = append(rs, rule{"/", accessRO, "ProtectSystem=strict"})
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			rs = append(rs, rule{p, accessRW, "ProtectSystem=strict (API file system)"})
		}
	case "full":
		for _, p := range []string{"/usr", "/boot", "/efi", "/etc"} {
			rs = append(rs, rule{p, accessRO, "ProtectSystem=full"})
		}
	case "yes":
		for _, p := range []string{"/usr", "/boot", "/efi"} {
			rs = append(rs, rule{p, accessRO, "ProtectSystem=yes"})
		}
	}
	homes := []string{"/home", "/root", "/run/user"}
	switch s.protectHome {
	case "yes":
		for _, p := range homes {
			rs = append(rs, rule{p, accessHidden, "ProtectHome=yes"})
		}
	case "read-only":
		for _, p := range homes {
			rs = append(rs, rule{p, accessRO, "ProtectHome=read-only"})
		}
	case "tmpfs":
		for _, p := range homes {
			rs = append(rs, rule{p, accessPrivate, "ProtectHome=tmpfs"})
		}
	}
	if s.privateTmp {
		for _, p := range []string{"/tmp", "/var/tmp"} {
			rs = append(rs, rule{p, accessPrivate, "PrivateTmp=yes"})
		}
	}
	for _, d := range s.dirs {
		rs = append(rs, rule{d, accessRW, "its StateDirectory=, RuntimeDirectory= or LogsDirectory="})
	}
	add := func(es []pathEntry, a perm, setting string) {
		for _, e := range es {
			if e.optional && !s.exist(e.path) {
				continue // systemd leaves out a missing "-" path
			}
			rs = append(rs, rule{e.path, a, setting + "=" + e.path})
		}
	}
	add(s.rw, accessRW, "ReadWritePaths")
	add(s.ro, accessRO, "ReadOnlyPaths")
	add(s.hide, accessHidden, "InaccessiblePaths")
	return rs
}

func (s *Sandbox) exist(p string) bool {
	if s.exists != nil {
		return s.exists(p)
	}
	_, err := os.Stat(p)
	return err == nil
}

// decide returns the rule that decides p: the deepest path holding p; of
// rules for one path, the most restrictive. ok is false when no rule
// applies (the path is as writable as outside the sandbox).
func (s *Sandbox) decide(p string) (r rule, ok bool) {
	for _, c := range s.rules() {
		if !within(p, c.path) {
			continue
		}
		if !ok || len(c.path) > len(r.path) || (len(c.path) == len(r.path) && c.access > r.access) {
			r, ok = c, true
		}
	}
	return r, ok
}

func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// Writable says whether the service may create or write the file at p
// (an absolute path): a file that does not exist yet needs its directory
// writable, which is what the deepest rule above it says. private is set
// when the place is the service's own tmpfs (PrivateTmp=): writable, but
// nobody else sees what is written there. why names the setting that
// forbids it.
func (s *Sandbox) Writable(p string) (ok, private bool, why string) {
	p = resolveDirs(path.Clean(p))
	r, found := s.decide(p)
	if !found {
		return true, false, ""
	}
	switch r.access {
	case accessRW:
		return true, false, ""
	case accessPrivate:
		return true, true, r.setting
	case accessHidden:
		return false, false, "inaccessible (" + r.setting + ")"
	}
	return false, false, "read-only (" + r.setting + ")"
}

// Readable says whether the service sees the file at p (an absolute
// path) as it is outside the sandbox: not when its place is hidden
// (ProtectHome=yes, InaccessiblePaths=) or the service's own tmpfs
// (PrivateTmp=, ProtectHome=tmpfs). why names the setting.
func (s *Sandbox) Readable(p string) (ok bool, why string) {
	r, found := s.decide(resolveDirs(path.Clean(p)))
	if !found {
		return true, ""
	}
	switch r.access {
	case accessHidden:
		return false, "inaccessible (" + r.setting + ")"
	case accessPrivate:
		return false, "in a private tmpfs (" + r.setting + ")"
	}
	return true, ""
}

// WritablePlaces lists the paths the unit opens for writing (beyond the
// API file systems), for messages.
func (s *Sandbox) WritablePlaces() []string {
	var out []string
	for _, r := range s.rules() {
		if r.access == accessRW && !strings.HasPrefix(r.setting, "ProtectSystem") {
			out = append(out, r.path)
		}
	}
	return out
}

// Strict reports whether the unit makes the whole file system read-only
// (ProtectSystem=strict).
func (s *Sandbox) Strict() bool { return s.protectSystem == "strict" }

// Name is the unit file's path, for messages.
func (s *Sandbox) Name() string {
	if len(s.Files) == 0 {
		return UnitName
	}
	return s.Files[0]
}

// resolveDirs resolves symbolic links in the existing directories of p
// (/var/run is /run): systemd applies its rules to the real paths.
func resolveDirs(p string) string {
	dir, file := path.Split(p)
	for d := path.Clean(dir); ; d = path.Dir(d) {
		real, err := filepath.EvalSymlinks(d)
		if err == nil {
			rest, _ := filepath.Rel(d, path.Clean(dir))
			return path.Join(real, rest, file)
		}
		if !errors.Is(err, fs.ErrNotExist) || d == "/" {
			return p
		}
	}
}
