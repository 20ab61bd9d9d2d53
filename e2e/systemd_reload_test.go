package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/systemdtest"
)

// bootPackaged boots a real systemd with the shipped sesamed.service
// (ExecReload=/usr/bin/sesame reload --wait) and conf as its config.
func bootPackaged(t *testing.T, conf string) *systemdtest.System {
	t.Helper()
	unit, err := os.ReadFile("../packaging/sesamed.service")
	if err != nil {
		t.Fatal(err)
	}
	return systemdtest.Boot(t, systemdtest.Options{
		Units: map[string]string{"sesamed.service": string(unit)},
		Files: map[string]systemdtest.FileSpec{
			"/usr/sbin/sesamed":       {Source: bin("sesamed"), Mode: 0o755},
			"/usr/bin/sesame":         {Source: bin("sesame"), Mode: 0o755},
			"/etc/sesame/sesame.conf": {Content: []byte(conf), Mode: 0o600},
		},
	})
}

// systemctl reload with the shipped unit reports the reload's result: it
// succeeds on a valid edit (the new door opens), fails on an invalid one
// while the running doors keep working, and systemctl status shows the
// error with file and line. SIGHUP still reloads.
func TestSystemctlReloadReportsTheResult(t *testing.T) {
	netnstest.RequireRoot(t)
	s := bootPackaged(t, sdConf(""))
	peer := s.PeerNS(t)
	if _, err := s.Systemctl("start", "sesamed"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// A valid edit.
	s.WriteFile("/etc/sesame/sesame.conf", []byte(sdConf("[added]\nsequence = 7100\n")), 0o600)
	if out, err := s.Systemctl("reload", "sesamed"); err != nil {
		t.Fatalf("systemctl reload of a valid edit: %v\n%s", err, out)
	}
	if !knockOpens(t, s, peer, "added", "7100") {
		t.Error("the door added by the reload does not open")
	}

	// An invalid edit: the reload fails, visibly; the doors keep working.
	s.WriteFile("/etc/sesame/sesame.conf", []byte(sdConf("[added]\nsequence = 7100\n[broken]\nsequence = 0\n")), 0o600)
	const where = "/etc/sesame/sesame.conf:12: "
	out, err := s.Systemctl("reload", "sesamed")
	if err == nil {
		t.Fatalf("systemctl reload of an invalid edit succeeded:\n%s", out)
	}
	t.Logf("systemctl reload: %v", err)
	if active, _ := s.Systemctl("is-active", "sesamed"); strings.TrimSpace(active) != "active" {
		t.Fatalf("sesamed %s after a refused reload", active)
	}
	status, _ := s.Systemctl("status", "sesamed")
	if !strings.Contains(status, where) || !strings.Contains(status, "config refused, the previous config keeps running") {
		t.Errorf("systemctl status does not say why the reload failed:\n%s", status)
	}
	t.Logf("systemctl status after the refused reload:\n%s", status)
	s.Run("sh", "-c", ": > /run/knocks")
	if !knockOpens(t, s, peer, "added", "7100") {
		t.Error("the running doors stopped after a refused reload")
	}
	if st, _ := s.Show("sesamed", "StatusText"); !strings.Contains(st, where) {
		t.Errorf("STATUS= %q", st)
	}
	// sesame status, as an admin runs it, says the same and exits 1.
	if out, err := s.Run("sesame", "status"); err == nil || !strings.Contains(out, where) || !strings.Contains(out, "FAILED") {
		t.Errorf("sesame status after the refused reload: %v\n%s", err, out)
	}

	// SIGHUP still reloads (and, the file still broken, still refuses).
	pid, _ := s.Show("sesamed", "MainPID")
	before, _ := s.Journalctl("-u", "sesamed", "-o", "cat")
	if _, err := s.Run("kill", "-HUP", pid); err != nil {
		t.Fatal(err)
	}
	if !poll(10*time.Second, func() bool {
		after, _ := s.Journalctl("-u", "sesamed", "-o", "cat")
		return strings.Count(after, "config not reloaded") > strings.Count(before, "config not reloaded")
	}) {
		t.Error("SIGHUP did not reload")
	}

	// Fixed: systemctl reload succeeds and the status is healthy again.
	s.WriteFile("/etc/sesame/sesame.conf", []byte(sdConf("[fixed]\nsequence = 7200\n")), 0o600)
	if out, err := s.Systemctl("reload", "sesamed"); err != nil {
		t.Fatalf("systemctl reload of the fixed file: %v\n%s", err, out)
	}
	if !knockOpens(t, s, peer, "fixed", "7200") {
		t.Error("the fixed config's door does not open")
	}
	if out, err := s.Run("sesame", "status"); err != nil || strings.Contains(out, "FAILED") {
		t.Errorf("sesame status after the fix: %v\n%s", err, out)
	}
}

// The first start on an invalid config, with no last good config to fall
// back on, fails: sesamed exits 1 with the error (file and line) rather
// than run with no doors, and systemd reports the start failed.
func TestFirstStartOnInvalidConfigFails(t *testing.T) {
	netnstest.RequireRoot(t)
	s := bootPackaged(t, sdConf("[broken]\nsequence = 0\n"))
	out, err := s.Systemctl("start", "sesamed")
	if err == nil {
		t.Fatalf("systemctl start on an invalid config succeeded:\n%s", out)
	}
	if st, _ := s.Show("sesamed", "ExecMainStatus"); st != "1" {
		t.Errorf("ExecMainStatus %q, want 1", st)
	}
	if err := s.WaitLog("sesamed", "/etc/sesame/sesame.conf:10: ", 10*time.Second); err != nil {
		t.Error(err)
	}
	if err := s.WaitLog("sesamed", "no last good config to fall back on", 10*time.Second); err != nil {
		t.Error(err)
	}
	if out, _ := s.Journalctl("-u", "sesamed", "-o", "cat"); strings.Contains(out, "starting up, listening on") {
		t.Errorf("sesamed reported itself started:\n%s", out)
	}
}
