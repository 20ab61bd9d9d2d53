package main

import (
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// machine describes the host the numbers come from.
func machine(goBin string) machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), LoadStart: loadavg()}
	for _, l := range strings.Split(readFileString("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			m.CPU = strings.TrimSpace(v)
			break
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "knockd").Output(); err == nil {
		m.Knockd = "knockd " + strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("iptables", "-V").Output(); err == nil {
		m.Iptables = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command(goBin, "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	return m
}

// loadavg is /proc/loadavg's three load averages.
func loadavg() string {
	f := strings.Fields(readFileString("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
