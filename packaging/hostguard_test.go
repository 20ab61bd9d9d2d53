package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// hostGuard records what installing a package could change on the host
// if the throw-away root leaked, and checks it again when the test ends,
// after the booted system and its namespaces are gone (its cleanup is
// registered first, so it runs last).
type hostGuard struct {
	marker, markerText string
	before             map[string]string
}

func guardHost(t *testing.T) {
	t.Helper()
	f, err := os.CreateTemp("", "sesame-pkgtest-marker-")
	if err != nil {
		t.Fatal(err)
	}
	g := &hostGuard{marker: f.Name(), markerText: fmt.Sprintf("pid %d", os.Getpid())}
	f.WriteString(g.markerText)
	f.Close()
	g.before = hostState(t)
	if g.before["dpkg sesame"] == "installed" {
		t.Fatalf("sesame is installed on this host: the test could not tell its own install from it")
	}
	t.Cleanup(func() {
		defer os.Remove(g.marker)
		if b, err := os.ReadFile(g.marker); err != nil || string(b) != g.markerText {
			t.Errorf("host: /tmp marker %s is gone or changed (%q, %v): the booted system reached the host's /tmp", g.marker, b, err)
		}
		after := hostState(t)
		for k, v := range g.before {
			if after[k] != v {
				t.Errorf("host: %s changed:\nbefore: %s\nafter:  %s", k, v, after[k])
			}
		}
		if after["dpkg sesame"] == "installed" {
			t.Errorf("host: dpkg says sesame is installed")
		}
		for _, p := range []string{"/usr/lib/systemd/system/sesamed.service", "/lib/systemd/system/sesamed.service", "/etc/systemd/system/multi-user.target.wants/sesamed.service"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("host: %s exists", p)
			}
		}
		if ns := ourNetns(); len(ns) > 0 {
			t.Errorf("host: network namespaces left behind: %v", ns)
		}
	})
}

// hostState is the host's view of everything the tests install.
func hostState(t *testing.T) map[string]string {
	t.Helper()
	st := map[string]string{}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", "sesame").Output()
	switch {
	case err == nil:
		st["dpkg sesame"] = strings.TrimSpace(string(out))
	default:
		st["dpkg sesame"] = "unknown to dpkg"
	}
	for _, p := range []string{"/usr/sbin/sesamed", "/usr/bin/sesame", "/etc/sesame", "/etc/sesame/sesame.conf", "/var/lib/sesame", "/var/lib/rpm",
		"/usr/lib/systemd/system/sesamed.service", "/usr/share/man/man8/sesamed.8.gz", "/var/lib/dpkg/info/sesame.list"} {
		if fi, err := os.Lstat(p); err == nil {
			st["file "+p] = fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime())
		} else {
			st["file "+p] = "absent"
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, line := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		f := strings.Fields(line)
		// Other tests add and remove /run/netns mounts concurrently.
		if len(f) < 6 || strings.HasPrefix(f[4], "/run/netns") {
			continue
		}
		mounts = append(mounts, strings.Join(f[3:], " "))
	}
	slices.Sort(mounts)
	st["mounts"] = strings.Join(mounts, "\n")
	return st
}

// ourNetns lists the network namespaces this test binary created
// (netnstest names them sesame-t<pid>-...).
func ourNetns() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var ours []string
	prefix := fmt.Sprintf("sesame-t%d-", os.Getpid())
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			ours = append(ours, f[0])
		}
	}
	return ours
}
