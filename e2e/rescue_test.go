package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// The rescue port with the real daemon: closed while sesamed is healthy,
// open within Rescue_After (+2 s) of a SIGKILL or a freeze with no
// process running, closed again soon after a restart.

func rescueConf(backend string) string {
	return fmt.Sprintf(`[options]
	Interface = sesame0
	Firewall = %s
	Rescue_Ports = %d/tcp
	Rescue_After = 2
[ssh]
	sequence = 7000,8000,9000
	Open = %d/tcp
`, backend, protected, protected)
}

func TestRescuePortWithTheRealDaemon(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, backend := range []string{"nftables", "iptables-nft"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			p := netnstest.NewPair(t)
			lockDown(t, p.Server, backend)
			listen(t, p.Server)
			dir := t.TempDir()
			reach := func() bool { return connects(p.Client, netip.Addr{}, netnstest.ServerAddr4) }

			d := startSesamedIn(t, p.Server, dir, rescueConf(backend))
			// Longer than Rescue_After: a heartbeat that lapsed would show.
			// A machine stalled past Rescue_After opens the rescue by
			// design; sesamed then says so (rescue-late: a refresh ended
			// more than Rescue_After after the previous one began), and only
			// an opening it does not explain is a failure.
			from := len(d.out.String())
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
				if !reach() {
					continue
				}
				if !poll(30*time.Second, func() bool {
					return strings.Contains(d.out.String()[from:], "event=rescue-late")
				}) {
					t.Fatal("rescue open while sesamed is healthy, and sesamed reports no late heartbeat")
				}
				t.Logf("rescue opened while sesamed's heartbeat came late (it says so): %s", lastLine(d.out.String(), "event=rescue-late"))
				from = len(d.out.String())
			}
			killed := time.Now()
			d.kill()
			if out, _ := exec.Command("ip", "netns", "pids", p.Server.Name).Output(); strings.TrimSpace(string(out)) != "" {
				t.Fatalf("processes left in the server namespace: %s", out)
			}
			if !poll(4*time.Second, reach) {
				t.Fatal("rescue not open 4 s after SIGKILL (Rescue_After 2)")
			}
			t.Logf("SIGKILL: rescue open after %v", time.Since(killed).Round(10*time.Millisecond))

			d = startSesamedIn(t, p.Server, dir, rescueConf(backend))
			ready := time.Now()
			if !poll(10*time.Second, func() bool { return !reach() }) {
				t.Fatal("rescue still open 10 s after the restart")
			}
			t.Logf("restart: rescue closed %v after start-up", time.Since(ready).Round(10*time.Millisecond))

			frozen := time.Now()
			d.cmd.Process.Signal(syscall.SIGSTOP)
			if !poll(4*time.Second, reach) {
				t.Fatal("rescue not open 4 s after SIGSTOP")
			}
			t.Logf("SIGSTOP: rescue open after %v", time.Since(frozen).Round(10*time.Millisecond))
			d.cmd.Process.Signal(syscall.SIGCONT)
			// The resumed daemon's next tick closes it: within its interval
			// (Rescue_After/3) on a quiet machine, later on a loaded one.
			resumed := time.Now()
			if !poll(30*time.Second, func() bool { return !reach() }) {
				t.Fatal("rescue still open 30 s after SIGCONT")
			}
			t.Logf("SIGCONT: rescue closed after %v", time.Since(resumed).Round(10*time.Millisecond))
		})
	}
}

// lastLine is the last line of out containing s, or "".
func lastLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
