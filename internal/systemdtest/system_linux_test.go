package systemdtest

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// helperFile installs this test binary as /usr/local/bin/sdhelper.
func helperFile(t *testing.T) map[string]FileSpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]FileSpec{"/usr/local/bin/sdhelper": {Source: exe}} // mode taken from the binary
}

func merge(ms ...map[string]FileSpec) map[string]FileSpec {
	out := map[string]FileSpec{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

const notifyUnit = `[Unit]
Description=systemdtest Type=notify helper
DefaultDependencies=no

[Service]
Type=notify
Environment=SESAME_SDHELPER=serve
ExecStart=/usr/local/bin/sdhelper
ExecReload=/bin/kill -HUP $MAINPID
`

func TestBootNotifyReloadPoweroff(t *testing.T) {
	guardHost(t)
	const conf = "[options]\n\tlogfile = /var/log/knockd.log\n"
	s := Boot(t, Options{
		Units: map[string]string{
			"sdhelper.service": notifyUnit,
			// A drop-in makes each reload take a while, so the reloading
			// state RELOADING=1 starts is observable.
			"sdhelper.service.d/slow-reload.conf": "[Service]\nEnvironment=SDHELPER_RELOAD_TAKES=1500ms\n",
		},
		Files: merge(helperFile(t), map[string]FileSpec{
			"/etc/sesame/knockd.conf": {Content: []byte(conf), Mode: 0o600},
		}),
	})

	// The namespace's files are its own.
	if got, err := s.ReadFile("/etc/sesame/knockd.conf"); err != nil || string(got) != conf {
		t.Fatalf("config inside = %q, %v", got, err)
	}
	if out, err := s.Run("stat", "-c", "%a", "/etc/sesame/knockd.conf"); err != nil || strings.TrimSpace(out) != "600" {
		t.Fatalf("config mode inside = %q, %v; want 600", out, err)
	}
	if err := s.WriteFile("/var/lib/sesame/state", []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadFile("/var/lib/sesame/state"); err != nil || string(got) != "x" {
		t.Fatalf("WriteFile then ReadFile = %q, %v", got, err)
	}
	if _, err := os.Stat("/var/lib/sesame/state"); err == nil {
		t.Fatal("a file written inside the system appeared on the host")
	}
	if out, err := s.Run("stat", "-f", "-c", "%T", "/tmp"); err != nil || strings.TrimSpace(out) != "tmpfs" {
		t.Fatalf("/tmp inside is %q, %v; want a private tmpfs", out, err)
	}
	if out, err := s.Run("ip", "-o", "link"); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("network namespace not empty: %q, %v", out, err)
	}

	if _, err := s.Systemctl("start", "sdhelper.service"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitActive("sdhelper.service", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sdhelper.service", "sdhelper: ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Show("sdhelper.service", "StatusText"); err != nil || got != "serving" {
		t.Fatalf("StatusText = %q, %v; want serving", got, err)
	}

	pid, err := s.Show("sdhelper.service", "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's RELOADING=1 (with MONOTONIC_USEC) must keep systemd in
	// "reloading" until READY=1. With ExecReload=kill -HUP, systemd 252
	// races: if RELOADING=1 arrives before it reaps kill, `systemctl
	// reload` itself waits for READY=1; otherwise the reload job ends at
	// once and the unit shows "reloading" afterwards. Either proves it.
	start := time.Now()
	if _, err := s.Systemctl("reload", "sdhelper.service"); err != nil {
		t.Fatal(err)
	}
	blocked := time.Since(start) >= time.Second
	sawReloading := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, _ := s.Show("sdhelper.service", "ActiveState")
		if state == "reloading" {
			sawReloading = true
		}
		if state == "active" {
			if j, err := s.Journalctl("-o", "cat", "-u", "sdhelper.service"); err == nil && strings.Contains(j, "sdhelper: reloaded 1") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload did not finish (state %q)\n%s", state, s.diagnostics("sdhelper.service"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !blocked && !sawReloading {
		t.Fatal("systemd never treated the unit as reloading: RELOADING=1 was not honoured")
	}
	t.Logf("systemctl reload waited for READY=1: %v; unit seen reloading afterwards: %v", blocked, sawReloading)
	if got, _ := s.Show("sdhelper.service", "MainPID"); got != pid {
		t.Fatalf("MainPID changed across reload: %s -> %s", pid, got)
	}
	waitShow(t, s, "sdhelper.service", "StatusText", "serving, reloaded 1 times")

	if err := s.Poweroff(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	default:
		t.Fatal("Poweroff returned but systemd is still running")
	}
	if err := s.Poweroff(); err != nil {
		t.Fatalf("second Poweroff: %v", err)
	}
}

func waitShow(t *testing.T, s *System, unit, prop, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.Show(unit, prop)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s = %q (%v), want %q\n%s", unit, prop, got, err, want, s.diagnostics(unit))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWatchdogKillsAndRestarts(t *testing.T) {
	guardHost(t)
	s := Boot(t, Options{
		Units: map[string]string{"sdwatch.service": `[Unit]
Description=systemdtest watchdog helper
DefaultDependencies=no

[Service]
Type=notify
Environment=SESAME_SDHELPER=serve SDHELPER_STALL_ONCE=/run/sdwatch-stalled
ExecStart=/usr/local/bin/sdhelper
WatchdogSec=2
Restart=on-failure
RestartSec=100ms
`},
		Files: helperFile(t),
		Start: []string{"sdwatch.service"},
	})
	first, err := s.Show("sdwatch.service", "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	// The first run's worker hangs after a second; its watchdog stops
	// pinging; systemd kills it and starts a second run, which stays up.
	waitShow(t, s, "sdwatch.service", "NRestarts", "1")
	if err := s.WaitActive("sdwatch.service", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sdwatch.service", "Watchdog timeout", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	journal, err := s.Journalctl("-o", "cat", "-u", "sdwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sdhelper: worker hung", "withholding watchdog ping", "worker", "SIGABRT"} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal lacks %q:\n%s", want, journal)
		}
	}
	second, _ := s.Show("sdwatch.service", "MainPID")
	if second == first || second == "0" {
		t.Fatalf("MainPID %s -> %s: not restarted", first, second)
	}
	if err := s.WaitLog("sdwatch.service", "sdhelper: ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The second run keeps the watchdog satisfied: wait until systemd has
	// seen pings from it later than one WatchdogSec after its start.
	deadline := time.Now().Add(30 * time.Second)
	for {
		start, _ := s.Show("sdwatch.service", "ExecMainStartTimestampMonotonic")
		ping, _ := s.Show("sdwatch.service", "WatchdogTimestampMonotonic")
		st, err1 := strconv.ParseInt(start, 10, 64)
		pg, err2 := strconv.ParseInt(ping, 10, 64)
		if err1 == nil && err2 == nil && pg-st > 2500000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no watchdog ping from the second run past WatchdogSec (start %s, last ping %s)\n%s", start, ping, s.diagnostics("sdwatch.service"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, _ := s.Show("sdwatch.service", "NRestarts"); got != "1" {
		t.Fatalf("NRestarts = %s after the healthy run: the watchdog killed it too", got)
	}
}

func TestBootFailsWithJournalWhenStartUnitFails(t *testing.T) {
	guardHost(t)
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root")
	}
	_, err := boot(t, Options{
		Units: map[string]string{"broken.service": "[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo broken-unit-said-this; exit 3'\n"},
		Start: []string{"broken.service"},
	})
	if err == nil {
		t.Fatal("boot with a failing Start unit succeeded")
	}
	for _, want := range []string{"degraded", "broken.service", "broken-unit-said-this"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("boot error lacks %q:\n%v", want, err)
		}
	}
}

func TestDefaultDependenciesBootMinimal(t *testing.T) {
	guardHost(t)
	s := Boot(t, Options{
		Units: map[string]string{
			"plain.service": "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/echo plain unit ran\n",
			// oneshot, so that it is never seen active before failing
			"crash.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo crash-unit-said-this; exit 7'\n",
		},
		Start: []string{"plain.service"},
	})
	if err := s.WaitLog("plain.service", "plain unit ran", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Default dependencies pull sysinit.target and basic.target, but with
	// static wants and generators disabled nothing else runs.
	out, err := s.Systemctl("list-units", "--type=service", "--state=active", "--plain", "--no-legend")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		unit := strings.Fields(line)[0]
		if unit != "plain.service" && unit != "systemd-journald.service" {
			t.Errorf("unexpected active service %s", unit)
		}
	}
	// A unit that fails after start: WaitActive says so at once, with its
	// journal.
	if _, err := s.Systemctl("start", "crash.service"); err == nil {
		t.Fatal("starting a failing oneshot unit succeeded")
	}
	start := time.Now()
	err = s.WaitActive("crash.service", time.Minute)
	if err == nil || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "crash-unit-said-this") {
		t.Fatalf("WaitActive on a crashing unit = %v; want a failure with its journal", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("WaitActive took %v to report a failed unit", el)
	}
	if got, _ := s.Show("-.mount", "What"); got != containerName+"-root" {
		t.Errorf("root mount comes from %q, want the private overlay", got)
	}
	if bnd, err := s.Run("grep", "CapBnd", "/proc/1/status"); err != nil || strings.Contains(bnd, "000001ffffffffff") {
		t.Errorf("PID 1 kept the full bounding set: %q, %v", bnd, err)
	}
}

func TestPeerNSReachesUnit(t *testing.T) {
	guardHost(t)
	s := Boot(t, Options{
		Units: map[string]string{"sdlisten.service": strings.Replace(notifyUnit, "SESAME_SDHELPER=serve", "SESAME_SDHELPER=listen", 1)},
		Files: helperFile(t),
		Start: []string{"sdlisten.service"},
	})
	peer := s.PeerNS(t)
	for _, addr := range []string{netnstest.ServerAddr4.String(), netnstest.ServerAddr6.String()} {
		var line string
		err := peer.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(helperPort)), 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		if err != nil {
			t.Fatalf("dial %s from the peer namespace: %v", addr, err)
		}
		client := netnstest.ClientAddr4.String()
		if strings.Contains(addr, ":") {
			client = netnstest.ClientAddr6.String()
		}
		if strings.TrimSpace(line) != "hello "+client {
			t.Fatalf("greeting from %s = %q, want hello %s", addr, line, client)
		}
	}
	if _, err := os.Stat(s.NetNSPath()); err != nil {
		t.Fatalf("NetNSPath: %v", err)
	}
}
