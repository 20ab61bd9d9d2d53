package systemdtest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var cgroupSeq atomic.Int64

// cgroupPrefix starts the name of every cgroup the harness creates; the
// creating test process's PID follows.
const cgroupPrefix = "sesame-systemdtest-"

// sweepStaleCgroups removes cgroups left by test processes that died
// before their cleanup ran (their namespaces died with them, via
// Pdeathsig). Only empty cgroups can be removed, so a live system is
// never disturbed.
func sweepStaleCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, cgroupPrefix+"*"))
	for _, dir := range dirs {
		pid, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), cgroupPrefix), "-")
		if !ok || pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pid)); errors.Is(err, fs.ErrNotExist) {
			_ = removeTree(dir)
		}
	}
}

// childCgroup is a cgroup v2 directory the harness creates under its own
// cgroup; the booted systemd sees it as the root of its cgroup namespace,
// so its whole tree stays inside it.
type childCgroup struct {
	dir string
	fd  int // directory descriptor for clone3(CLONE_INTO_CGROUP)
}

// newChildCgroup creates the cgroup next to the calling process's own.
func newChildCgroup() (*childCgroup, error) {
	mnt, root, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	self, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	rel, ok := strings.CutPrefix(self, root)
	if !ok {
		return nil, fmt.Errorf("systemdtest: own cgroup %s is outside the cgroup2 mount's root %s", self, root)
	}
	parent := filepath.Join(mnt, rel)
	sweepStaleCgroups(parent)
	dir := filepath.Join(parent, fmt.Sprintf("%s%d-%d", cgroupPrefix, os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("systemdtest: create cgroup: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("systemdtest: open cgroup %s: %w", dir, err)
	}
	return &childCgroup{dir: dir, fd: fd}, nil
}

// remove deletes the cgroup tree bottom-up. Cgroups of processes that just
// died can stay busy for a moment, so it retries until timeout. It never
// kills anything: by then the PID namespace, and every process in it, is
// gone.
func (c *childCgroup) remove(timeout time.Duration) error {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	deadline := time.Now().Add(timeout)
	for {
		err := removeTree(c.dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			procs, _ := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
			return fmt.Errorf("systemdtest: remove cgroup %s: %w (processes left: %q)", c.dir, err, strings.TrimSpace(string(procs)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeTree rmdirs dir's subdirectories deepest first, then dir. Cgroup
// directories hold only kernel interface files, which rmdir ignores.
func removeTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("rmdir %s: %w", d, err)
		}
	}
	return nil
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted (on hybrid
// hosts it is /sys/fs/cgroup/unified) and the hierarchy path it shows.
func cgroup2Mount() (mountPoint, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", fmt.Errorf("systemdtest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			continue
		}
		return unescapeMountinfo(fields[4]), unescapeMountinfo(fields[3]), nil
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("systemdtest: read mountinfo: %w", err)
	}
	return "", "", errors.New("systemdtest: no cgroup2 hierarchy mounted; systemd needs one")
}

// ownCgroup returns this process's cgroup v2 path ("0::/path").
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("systemdtest: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("systemdtest: no cgroup v2 entry in /proc/self/cgroup")
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space).
func unescapeMountinfo(s string) string {
	isOctal := func(c byte) bool { return c >= '0' && c <= '7' }
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
