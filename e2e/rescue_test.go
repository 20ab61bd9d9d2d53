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
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
				if reach() {
					t.Fatal("rescue open while sesamed is healthy")
				}
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
			if !poll(2*time.Second, func() bool { return !reach() }) {
				t.Fatal("rescue still open 2 s after the restart")
			}
			t.Logf("restart: rescue closed %v after start-up", time.Since(ready).Round(10*time.Millisecond))

			frozen := time.Now()
			d.cmd.Process.Signal(syscall.SIGSTOP)
			if !poll(4*time.Second, reach) {
				t.Fatal("rescue not open 4 s after SIGSTOP")
			}
			t.Logf("SIGSTOP: rescue open after %v", time.Since(frozen).Round(10*time.Millisecond))
			d.cmd.Process.Signal(syscall.SIGCONT)
			if !poll(3*time.Second, func() bool { return !reach() }) {
				t.Fatal("rescue still open 3 s after SIGCONT")
			}
		})
	}
}
