package systemdtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostState is what the booted system could plausibly touch on the host
// if isolation broke. Other tests on the machine create network namespaces
// concurrently, so /run/netns mounts and mounts in tests' temp dirs are
// left out.
type hostState map[string]string

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	st := hostState{}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, line := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		f := strings.Fields(line)
		// Drop mount and parent IDs; keep root, mount point, options,
		// optional fields, type, source and superblock options.
		// Other test binaries (go test ./... runs them side by side) make
		// namespaces and scratch mounts under their own temp dirs; a
		// booted systemd never mounts there.
		if len(f) < 6 || strings.HasPrefix(f[4], "/run/netns/") || isScratchMount(f[4]) {
			continue
		}
		mounts = append(mounts, strings.Join(f[3:], " "))
	}
	slices.Sort(mounts)
	st["mounts"] = strings.Join(mounts, "\n")
	for _, k := range []string{
		"kernel/core_pattern", "kernel/printk", "kernel/hostname", "kernel/domainname",
		"fs/nr_open", "fs/file-max", "net/unix/max_dgram_qlen", "kernel/pid_max",
	} {
		b, _ := os.ReadFile("/proc/sys/" + k)
		st["sysctl "+k] = strings.TrimSpace(string(b))
	}
	for _, p := range []string{"/etc/machine-id", "/etc/hostname"} {
		b, _ := os.ReadFile(p)
		st["file "+p] = string(b)
	}
	// Active swaps by name (their usage moves on its own).
	swaps, _ := os.ReadFile("/proc/swaps")
	var swapNames []string
	for _, line := range strings.Split(string(swaps), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			swapNames = append(swapNames, f[0])
		}
	}
	st["swaps"] = strings.Join(swapNames, " ")
	for _, dir := range []string{"/var/log/journal", "/run/systemd/system", "/etc/systemd/system", "/dev", "/var/tmp", "/var/lib/systemd"} {
		st["dir "+dir] = listDir(dir)
	}
	for _, p := range []string{"/run/mount", "/run/log", "/run/user", "/run/systemd/journal", "/dev/log", "/etc/sesame", "/usr/local/bin/sdhelper"} {
		_, err := os.Lstat(p)
		st["exists "+p] = fmt.Sprint(err == nil)
	}
	mnt, root, err := cgroup2Mount()
	if err == nil {
		self, _ := ownCgroup()
		rel, _ := strings.CutPrefix(self, root)
		// Only this process's: a boot sweeps stale ones of dead processes.
		matches, _ := filepath.Glob(filepath.Join(mnt, rel, fmt.Sprintf("%s%d-*", cgroupPrefix, os.Getpid())))
		st["cgroups"] = strings.Join(matches, " ")
		st["cgroup subtree_control"] = readTrim(filepath.Join(mnt, rel, "cgroup.subtree_control"))
	}
	// A host with systemd as PID 1 must not have seen our units.
	if _, err := os.Stat("/run/systemd/system"); err == nil && isSystemdPID1() {
		out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager", "sdhelper*", "sesame*").Output()
		st["host systemd units"] = string(out)
	}
	return st
}

func isSystemdPID1() bool {
	comm, _ := os.ReadFile("/proc/1/comm")
	return strings.TrimSpace(string(comm)) == "systemd"
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func listDir(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var names []string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		names = append(names, fmt.Sprintf("%s %v", e.Name(), info.Mode()))
	}
	return strings.Join(names, "\n")
}

// diffHost lists the keys whose values changed.
func diffHost(before, after hostState) []string {
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s:\n  before: %q\n  after:  %q", k, v, after[k]))
		}
	}
	slices.Sort(diffs)
	return diffs
}

// guardHost snapshots the host now and, after everything the test
// registers later has been cleaned up (the system powered off), checks
// that the snapshot still holds and that a marker file in the host's /tmp
// survived. Call it before Boot.
func guardHost(t *testing.T) {
	t.Helper()
	marker, err := os.CreateTemp("/tmp", "sesame-systemdtest-marker-*")
	if err != nil {
		t.Fatal(err)
	}
	const content = "the host's /tmp must survive a boot\n"
	if _, err := marker.WriteString(content); err != nil {
		t.Fatal(err)
	}
	marker.Close()
	before := snapshotHost(t)
	t.Cleanup(func() {
		defer os.Remove(marker.Name())
		if b, err := os.ReadFile(marker.Name()); err != nil || string(b) != content {
			t.Errorf("host /tmp marker %s damaged: %q, %v", marker.Name(), b, err)
		}
		if diffs := diffHost(before, snapshotHost(t)); len(diffs) > 0 {
			t.Errorf("the host changed during the test:\n%s", strings.Join(diffs, "\n"))
		}
	})
}

// The guard must be able to fail: a change where it looks is reported.
func TestHostSnapshotNoticesChanges(t *testing.T) {
	before := snapshotHost(t)
	f, err := os.CreateTemp("/var/tmp", "sesame-systemdtest-probe-*")
	if err != nil {
		t.Skipf("cannot write /var/tmp: %v", err)
	}
	f.Close()
	defer os.Remove(f.Name())
	diffs := diffHost(before, snapshotHost(t))
	if len(diffs) != 1 || !strings.Contains(diffs[0], filepath.Base(f.Name())) {
		t.Fatalf("a new file in /var/tmp gave diffs %q", diffs)
	}
}

// isScratchMount reports whether a mount point lies in a test's temporary
// directory (t.TempDir names start with the test's name).
func isScratchMount(mountPoint string) bool {
	rel, err := filepath.Rel(os.TempDir(), mountPoint)
	return err == nil && strings.HasPrefix(rel, "Test") && !strings.HasPrefix(rel, "..")
}
