package trust

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// trusted reports whether uid may own what Sesame trusts: root, or the
// user the daemon runs as.
func trusted(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Path checks path and every directory above it: each is owned by root
// (or the daemon's user) and not writable by its group or others, else
// someone else could change or replace what path names. A world-writable
// directory with the sticky bit (/tmp) is allowed above path: others
// cannot rename or remove what they do not own in it. Symbolic links on
// the way are checked as links (their owner) and then followed, and the
// path they lead to is checked the same way.
func Path(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("trust %s: %w", path, err)
	}
	if err := chain(abs, true); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("trust %s: %w", path, err)
	}
	if real != abs {
		return chain(real, true)
	}
	return nil
}

// chain checks p and its ancestors, p itself without the sticky
// exception when last is set.
func chain(p string, last bool) error {
	for {
		if err := check(p, !last); err != nil {
			return err
		}
		last = false
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// check looks at one name, not following a symlink.
func check(p string, stickyOK bool) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("trust %s: %w", p, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("trust %s: no owner information", p)
	}
	if !trusted(st.Uid) {
		return fmt.Errorf("%w: %s is owned by uid %d, not root: whoever owns it can make Sesame run commands as root (chown root %s)", ErrUntrusted, p, st.Uid, p)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil // a link's own mode means nothing; its target is checked
	}
	if fi.Mode().Perm()&0o022 != 0 {
		if stickyOK && fi.IsDir() && fi.Mode()&fs.ModeSticky != 0 {
			return nil
		}
		return fmt.Errorf("%w: %s is writable by its group or others (mode %04o): they could make Sesame run commands as root (chmod go-w %s)", ErrUntrusted, p, fi.Mode().Perm(), p)
	}
	return nil
}

// Tree checks dir as Path does, then everything under it: each entry
// owned by root (or the daemon's user), none writable by group or
// others, and no symbolic links (nothing under dir may lead elsewhere).
func Tree(dir string) error {
	if err := Path(dir); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("trust %s: %w", p, err)
		}
		if p == dir {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s is a symbolic link: nothing in %s may point elsewhere (remove it)", ErrUntrusted, p, dir)
		}
		return check(p, false)
	})
}
