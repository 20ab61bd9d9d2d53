package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/systemdtest"
)

// sesamed under a real systemd (booted in private namespaces): Type=notify
// start, reloads by systemctl, by an in-place edit and by a rename, an
// invalid edit, the watchdog restarting a frozen daemon, and journald's
// structured entries.

const unitUnderTest = `[Unit]
Description=Sesame port-knocking daemon (test)
[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/sbin/sesamed -c /etc/sesame/sesame.conf
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=2
Restart=on-failure
RestartSec=100ms
`

func sdConf(doors string) string {
	return `[options]
	Interface = sesame0
[ssh]
	sequence = 7000,8000,9000
	tcpflags = syn
	start_command = echo open %IP% >> /run/knocks
	stop_command = echo close %IP% >> /run/knocks
	cmd_timeout = 60
` + doors
}

func bootSesame(t testing.TB) (*systemdtest.System, *netnstest.NS) {
	s := systemdtest.Boot(t, systemdtest.Options{
		Units: map[string]string{"sesamed.service": unitUnderTest},
		Files: map[string]systemdtest.FileSpec{
			"/usr/local/sbin/sesamed": {Source: bin("sesamed"), Mode: 0o755},
			"/etc/sesame/sesame.conf": {Content: []byte(sdConf("")), Mode: 0o600},
		},
	})
	peer := s.PeerNS(t)
	return s, peer
}

// knockOpens knocks ports on the system from peer until door's OPEN
// SESAME from the peer shows in the journal.
func knockOpens(t testing.TB, s *systemdtest.System, peer *netnstest.NS, door string, ports ...string) bool {
	want := fmt.Sprintf("%s: %s: OPEN SESAME", netnstest.ClientAddr4, door)
	return poll(5*time.Second, func() bool {
		peer.Run(append([]string{"knock", netnstest.ServerAddr4.String()}, ports...)...)
		out, _ := s.Journalctl("-u", "sesamed", "-o", "cat", "--since", "-1min")
		return strings.Contains(out, want)
	})
}

func TestUnderSystemd(t *testing.T) {
	netnstest.RequireRoot(t)
	s, peer := bootSesame(t)
	start := time.Now()
	if _, err := s.Systemctl("start", "sesamed"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("systemctl start to active: %v", time.Since(start))
	if st, _ := s.Show("sesamed", "StatusText"); !strings.Contains(st, "doors on sesame0 (up)") {
		t.Errorf("STATUS= %q", st)
	}
	if !knockOpens(t, s, peer, "ssh", "7000", "8000", "9000") {
		t.Fatal("knock did not open under systemd")
	}

	// journald holds the structured grant entry.
	if !poll(5*time.Second, func() bool {
		out, _ := s.Journalctl("-u", "sesamed", "SESAME_EVENT=grant", "-o", "json")
		return strings.Contains(out, "SESAME_GRANT_ID")
	}) {
		t.Fatal("no SESAME_EVENT=grant entry")
	}
	out, _ := s.Journalctl("-u", "sesamed", "SESAME_EVENT=grant", "-o", "json", "-n", "1")
	var entry map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &entry); err != nil {
		t.Fatalf("journal entry %q: %v", out, err)
	}
	for k, want := range map[string]string{"SESAME_DOOR": "ssh", "SESAME_SOURCE": netnstest.ClientAddr4.String(), "MESSAGE": netnstest.ClientAddr4.String() + ": ssh: access granted"} {
		if entry[k] != want {
			t.Errorf("%s = %v, want %q", k, entry[k], want)
		}
	}
	for _, k := range []string{"SESAME_GRANT_ID", "SESAME_DEADLINE"} {
		if entry[k] == nil {
			t.Errorf("entry lacks %s: %v", k, entry)
		}
	}
	// No duplicates: stderr goes nowhere while journald gets each entry once.
	opens, _ := s.Journalctl("-u", "sesamed", "-o", "cat")
	if n := strings.Count(opens, netnstest.ClientAddr4.String()+": ssh: OPEN SESAME"); n != 1 {
		t.Errorf("OPEN SESAME appears %d times in the journal", n)
	}

	// systemctl reload (SIGHUP) with a new door.
	s.WriteFile("/etc/sesame/sesame.conf", []byte(sdConf("[reload]\nsequence = 7100\n")), 0o600)
	if _, err := s.Systemctl("reload", "sesamed"); err != nil {
		t.Fatal(err)
	}
	if !knockOpens(t, s, peer, "reload", "7100") {
		t.Error("door added before systemctl reload does not open")
	}
	// An in-place edit, no signal.
	if _, err := s.Run("sed", "-i", "s/^\\[reload\\]$/[inplace]/", "/etc/sesame/sesame.conf"); err != nil {
		t.Fatal(err)
	}
	if !knockOpens(t, s, peer, "inplace", "7100") {
		t.Error("sed -i edit not picked up")
	}
	// A rename-replace, as editors and config managers do.
	s.WriteFile("/etc/sesame/sesame.conf.new", []byte(sdConf("[renamed]\nsequence = 7200\n")), 0o600)
	if _, err := s.Run("mv", "/etc/sesame/sesame.conf.new", "/etc/sesame/sesame.conf"); err != nil {
		t.Fatal(err)
	}
	if !knockOpens(t, s, peer, "renamed", "7200") {
		t.Error("rename-replace not picked up")
	}
	// An invalid edit keeps the running doors and says so in STATUS=.
	s.WriteFile("/etc/sesame/sesame.conf", []byte(sdConf("[broken]\nsequence = 0\n")), 0o600)
	if err := s.WaitLog("sesamed", "config not reloaded, keeping the running one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Show("sesamed", "StatusText"); !strings.Contains(st, "config error") || !strings.Contains(st, "/etc/sesame/sesame.conf:") {
		t.Errorf("STATUS= %q does not show the config error", st)
	}
	if active, _ := s.Systemctl("is-active", "sesamed"); strings.TrimSpace(active) != "active" {
		t.Fatalf("sesamed %s after an invalid edit", active)
	}
	s.Run("sh", "-c", ": > /run/knocks")
	if !knockOpens(t, s, peer, "renamed", "7200") {
		t.Error("running doors stopped working after an invalid edit")
	}

	// Freeze the daemon: the watchdog kills it and systemd restarts it.
	pid1, _ := s.Show("sesamed", "MainPID")
	frozen := time.Now()
	if _, err := s.Run("kill", "-STOP", pid1); err != nil {
		t.Fatal(err)
	}
	var pid2 string
	if !poll(15*time.Second, func() bool {
		pid2, _ = s.Show("sesamed", "MainPID")
		active, _ := s.Systemctl("is-active", "sesamed")
		return pid2 != pid1 && pid2 != "0" && strings.TrimSpace(active) == "active"
	}) {
		t.Fatal("frozen sesamed not restarted by the watchdog")
	}
	t.Logf("frozen (SIGSTOP) to active again: %v", time.Since(frozen))
	if res, _ := s.Journalctl("-u", "sesamed", "-o", "cat"); !strings.Contains(res, "Watchdog timeout") && !strings.Contains(res, "watchdog") {
		out, _ := s.Journalctl("--no-pager", "-n", "40")
		t.Logf("journal:\n%s", out)
	}
	// The file on disk is still the invalid edit: the restarted daemon
	// runs the last good config rather than failing to start.
	if err := s.WaitLog("sesamed", "config invalid, running the last good config", 5*time.Second); err != nil {
		t.Error(err)
	}
	if !knockOpens(t, s, peer, "renamed", "7200") {
		t.Error("knocks do not work after the watchdog restart")
	}
}

// BenchmarkWatchdogRecovery prints the time from a frozen daemon
// (SIGSTOP) to the service active again with a new process.
func BenchmarkWatchdogRecovery(b *testing.B) {
	netnstest.RequireRoot(b)
	s, _ := bootSesame(b)
	if _, err := s.Systemctl("start", "sesamed"); err != nil {
		b.Fatal(err)
	}
	if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pid1, _ := s.Show("sesamed", "MainPID")
		start := time.Now()
		s.Run("kill", "-STOP", pid1)
		if !poll(20*time.Second, func() bool {
			pid2, _ := s.Show("sesamed", "MainPID")
			active, _ := s.Systemctl("is-active", "sesamed")
			return pid2 != pid1 && pid2 != "0" && strings.TrimSpace(active) == "active"
		}) {
			b.Fatal("not restarted")
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-active")
	}
}
