package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sesame grants / revoke against a running daemon, and grants read from
// the journal when the daemon is down.
func TestAdminGrantsAndRevoke(t *testing.T) {
	e := newEnv(t, baseConf+`[held]
	sequence = 7800,8800
	start_command = echo start %IP% >> {{DIR}}/held
	stop_command = echo stop %IP% >> {{DIR}}/held
	cmd_timeout = 60
`)
	socket := filepath.Join(e.d.dir, "control.sock")
	state := filepath.Join(e.d.dir, "state")
	e.knock("7800", "8800")
	if !poll(5*time.Second, func() bool { return len(e.d.file("held")) == 1 }) {
		t.Fatal("grant not started")
	}
	out, err := exec.Command(bin("sesame"), "grants", "--socket", socket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "held") || !strings.Contains(string(out), client) || !strings.Contains(string(out), "stop: echo stop "+client) {
		t.Fatalf("sesame grants: %v\n%s", err, out)
	}
	out, err = exec.Command(bin("sesame"), "grants", "--json", "--socket", socket).Output()
	var gs []struct {
		ID, Door, Source, State string
		Deadline                time.Time
	}
	if err != nil || json.Unmarshal(out, &gs) != nil || len(gs) != 1 || gs[0].Door != "held" || gs[0].Source != client {
		t.Fatalf("sesame grants --json: %v\n%s", err, out)
	}
	if left := time.Until(gs[0].Deadline); left < 50*time.Second || left > 61*time.Second {
		t.Errorf("deadline %v away, want about 60 s", left)
	}

	// The daemon is killed: the journal still tells.
	e.d.kill()
	out, err = exec.Command(bin("sesame"), "grants", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), gs[0].ID) {
		t.Fatalf("sesame grants --state-dir: %v\n%s", err, out)
	}
	out, _ = exec.Command(bin("sesame"), "grants", "--socket", socket).CombinedOutput()
	if !strings.Contains(string(out), "is sesamed running?") {
		t.Errorf("grants without a daemon: %s", out)
	}

	// Restarted (the stale socket is replaced), revoke by address.
	e.d = startSesamedIn(t, e.pair.Server, e.d.dir, baseConf+`[held]
	sequence = 7800,8800
	start_command = echo start %IP% >> {{DIR}}/held
	stop_command = echo stop %IP% >> {{DIR}}/held
	cmd_timeout = 60
`)
	out, err = exec.Command(bin("sesame"), "revoke", "--socket", socket, client).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked "+gs[0].ID) {
		t.Fatalf("sesame revoke: %v\n%s", err, out)
	}
	if !poll(5*time.Second, func() bool { return slices.Equal(e.d.file("held"), []string{"start " + client, "stop " + client}) }) {
		t.Fatalf("revoke did not run the stop command: %q", e.d.file("held"))
	}
	out, _ = exec.Command(bin("sesame"), "grants", "--socket", socket).CombinedOutput()
	if !strings.Contains(string(out), "no active grants") {
		t.Errorf("after revoke: %s", out)
	}
	if out, err := exec.Command(bin("sesame"), "revoke", "--socket", socket, "192.0.2.200").CombinedOutput(); err == nil {
		t.Errorf("revoking nothing succeeded: %s", out)
	}
}
