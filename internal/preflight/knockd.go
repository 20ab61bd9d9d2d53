package preflight

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// knockd warns when knockd runs: on the interface sesamed listens on,
// both would act on every knock (two rules for one knocker, a stop
// command from each).
func (c *checker) knockd() {
	for _, p := range sys.knockd() {
		c.r.Warnings = append(c.r.Warnings, "knockd is running ("+p+"): where it listens on an interface sesamed listens on, both act on every knock; stop it first (systemctl disable --now knockd)")
	}
}

// runningKnockd describes the knockd processes in /proc ("pid 12:
// /usr/sbin/knockd -i eth0").
func runningKnockd() []string {
	ms, _ := filepath.Glob("/proc/[0-9]*/comm")
	var out []string
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil || strings.TrimSpace(string(b)) != "knockd" {
			continue
		}
		dir := filepath.Dir(m)
		pid, _ := strconv.Atoi(filepath.Base(dir))
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		args := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if args == "" {
			args = "knockd"
		}
		out = append(out, "pid "+strconv.Itoa(pid)+": "+args)
	}
	return out
}
