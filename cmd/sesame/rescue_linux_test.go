package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// `sesame rescue` against a server namespace locked down by an admin
// firewall, with a listener on the rescue port. The command is the test
// binary re-executed as sesame, started with `ip netns exec`.

const rescuePort = 2222

// requireExecInNS proves that programs started in the namespace see it,
// before any firewall is touched.
func requireExecInNS(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	got := strings.TrimSpace(ns.MustRun("readlink", "/proc/self/ns/net"))
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got == host {
		t.Fatalf("ip netns exec ran in the host namespace %s: refusing to touch a firewall", host)
	}
}

// sesame runs `sesame args...` in ns and returns its stdout, stderr and
// exit status.
func sesame(t *testing.T, ns *netnstest.NS, env []string, args ...string) (string, string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(append([]string{exe}, args...)...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func reachable(t *testing.T, p *netnstest.Pair) bool {
	t.Helper()
	ok := false
	err := p.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netnstest.ServerAddr4, rescuePort).String(), 200*time.Millisecond)
		if err == nil {
			ok = true
			c.Close()
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestRescueCommand(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tool := range []string{"nft", "iptables", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install nftables iptables ipset): %v", tool, err)
		}
	}
	for _, fw := range []string{"nftables", "iptables"} {
		t.Run(fw, func(t *testing.T) {
			p := netnstest.NewPair(t)
			requireExecInNS(t, p.Server)
			dir := t.TempDir()
			if fw == "nftables" {
				admin := filepath.Join(dir, "admin.nft")
				writeFile(t, admin, fmt.Sprintf("table inet filter {\n chain input {\n  type filter hook input priority filter; policy drop;\n"+
					"  iif lo accept\n  ct state established,related accept\n  tcp dport %d accept\n }\n}\n", rescuePort))
				p.Server.MustRun("nft", "-f", admin)
			} else {
				p.Server.MustRun("iptables", "-P", "INPUT", "DROP")
				p.Server.MustRun("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
			}
			p.Server.Serve(t, rescuePort)

			door := "[ssh]\n sequence = 7000,8000,9000\n"
			conf := filepath.Join(dir, "sesame.conf")
			writeFile(t, conf, fmt.Sprintf("[options]\n Firewall = %s\n Rescue_Ports = %d/tcp\n Rescue_After = 30\n%s", fw, rescuePort, door))
			off := filepath.Join(dir, "off.conf")
			writeFile(t, off, "[options]\n Firewall = "+fw+"\n"+door)
			broken := filepath.Join(dir, "broken.conf")
			writeFile(t, broken, "[options]\n Rescue_Ports = 2222/tcp\n Bogus = 1\n"+door)
			// A knockd.conf whose one-time sequence file is not there: the
			// rescue reads only [options].
			knockd := filepath.Join(dir, "knockd.conf")
			writeFile(t, knockd, fmt.Sprintf("[options]\n Firewall = %s\n Rescue_Ports = %d/tcp\n Rescue_After = 30\n[smtp]\n one_time_sequences = %s\n", fw, rescuePort, filepath.Join(dir, "missing")))

			steps := []struct {
				name      string
				env       []string
				args      []string
				wantOut   string // prefix of stdout ("" means empty)
				wantOpen  bool
				wantErrIn string // substring of stderr
				wantCode  int
			}{
				{"status before anything", nil, []string{"rescue", "status", "-c", conf},
					"rescue NOT INSTALLED (2222:tcp, " + fw + "):", fw == "nftables", "", 2},
				{"close installs with a heartbeat", nil, []string{"rescue", "close", "-c", conf},
					"rescue closed: 2222:tcp opens 30s after the last heartbeat", false, "", 0},
				{"status closed", nil, []string{"rescue", "status", "-c", conf}, "rescue closed: 2222:tcp", false, "", 0},
				{"status from a knockd.conf with a missing one-time file", nil, []string{"rescue", "status", "-c", knockd}, "rescue closed: 2222:tcp", false, "", 0},
				{"status off", nil, []string{"rescue", "status", "-c", off}, "rescue off (no Rescue_Ports in " + off + ")", false, "", 0},
				{"open", nil, []string{"rescue", "open", "-v", "-c", conf},
					"rescue OPEN: 2222:tcp reachable (held open by an admin", true, "event=rescue-open", 0},
				{"status open", nil, []string{"rescue", "status", "-c", conf}, "rescue OPEN: 2222:tcp reachable", true, "", 1},
				{"close", nil, []string{"rescue", "close", "-v", "-c", conf}, "rescue closed:", false, "event=rescue-close", 0},
				{"if-failed after a clean stop does nothing", []string{"SERVICE_RESULT=success"},
					[]string{"rescue", "open", "--if-failed", "-c", conf}, "", false, "", 0},
				{"if-failed after a crash opens, quietly", []string{"SERVICE_RESULT=signal", "EXIT_CODE=killed", "EXIT_STATUS=KILL"},
					[]string{"rescue", "open", "--if-failed", "--quiet", "-v", "-c", conf}, "", true, "SERVICE_RESULT=signal", 0},
				{"close again", nil, []string{"rescue", "close", "-q", "-c", conf}, "", false, "", 0},
				{"no rescue configured: notice, exit 0", nil, []string{"rescue", "open", "-c", off},
					"no rescue port configured in " + off, false, "", 0},
				{"no rescue configured, quiet", nil, []string{"rescue", "open", "-q", "-c", off}, "", false, "", 0},
				{"broken config: opens what is installed", nil, []string{"rescue", "open", "-c", broken},
					"cannot read the config", true, "", 0},
				{"remove", nil, []string{"rescue", "remove", "-c", conf}, "rescue removed", fw == "nftables", "", 0},
				{"status after remove", nil, []string{"rescue", "status", "-c", conf}, "rescue NOT INSTALLED", fw == "nftables", "", 2},
				{"status of a config that cannot be read", nil, []string{"rescue", "status", "-c", filepath.Join(dir, "none.conf")}, "", fw == "nftables", "no such file", 2},
			}
			for _, s := range steps {
				out, errOut, code := sesame(t, p.Server, s.env, s.args...)
				if code != s.wantCode {
					t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", s.name, code, s.wantCode, out, errOut)
				}
				if (s.wantOut == "" && out != "") || !strings.HasPrefix(out, s.wantOut) {
					t.Errorf("%s: stdout %q, want prefix %q", s.name, out, s.wantOut)
				}
				if !strings.Contains(errOut, s.wantErrIn) {
					t.Errorf("%s: stderr %q, want %q in it", s.name, errOut, s.wantErrIn)
				}
				// On nftables a source the open rescue let in keeps its way
				// past the guard for half a second after a close.
				deadline := time.Now().Add(2 * time.Second)
				for got := reachable(t, p); got != s.wantOpen; got = reachable(t, p) {
					if time.Now().After(deadline) {
						t.Errorf("%s: port %d reachable %t, want %t", s.name, rescuePort, got, s.wantOpen)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			// With the rescue removed the admin's firewall alone decides:
			// nftables accepts the port (the admin's rule), iptables drops it.
			if out := p.Server.MustRun("ipset", "list", "-n"); strings.Contains(out, "sesame-rescue") {
				t.Errorf("ipset left after remove: %s", out)
			}
		})
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
