package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/internal/control"
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

	// The daemon is killed: the journal still tells, in the same words.
	e.d.kill()
	out, err = exec.Command(bin("sesame"), "grants", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), gs[0].ID) {
		t.Fatalf("sesame grants --state-dir: %v\n%s", err, out)
	}
	out, err = exec.Command(bin("sesame"), "grants", "--json", "--state-dir", state).Output()
	var offline []struct{ ID, State string }
	if err != nil || json.Unmarshal(out, &offline) != nil || len(offline) != 1 || offline[0].ID != gs[0].ID || offline[0].State != gs[0].State || gs[0].State != "active" {
		t.Errorf("the same grant over the socket: %+v; with --state-dir: %v\n%s", gs[0], err, out)
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
	// By a prefix of its id, as git takes a short hash.
	out, err = exec.Command(bin("sesame"), "revoke", "--socket", socket, gs[0].ID[:8]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked "+gs[0].ID) {
		t.Fatalf("sesame revoke %s: %v\n%s", gs[0].ID[:8], err, out)
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

// A stop command that keeps failing is retried, shown as "stop failing"
// with its last error by sesame grants and in the daemon's status,
// retried again after a restart, never journaled as revoked, and ended
// by sesame revoke --forget.
func TestFailingStopIsShownRetriedAndForgotten(t *testing.T) {
	conf := baseConf + `[held]
	sequence = 7800,8800
	start_command = echo start %IP% >> {{DIR}}/held
	stop_command = echo try %IP% >> {{DIR}}/held; test ! -e {{DIR}}/broken
	cmd_timeout = 1
`
	e := newEnv(t, conf)
	socket := filepath.Join(e.d.dir, "control.sock")
	state := filepath.Join(e.d.dir, "state")
	os.WriteFile(filepath.Join(e.d.dir, "broken"), nil, 0o600)
	e.knock("7800", "8800")
	failing := func() (string, bool) {
		out, _ := exec.Command(bin("sesame"), "grants", "--socket", socket).CombinedOutput()
		return string(out), strings.Contains(string(out), "stop failing") && strings.Contains(string(out), "stop command: exit status 1")
	}
	if !poll(10*time.Second, func() bool { _, ok := failing(); return ok }) {
		out, _ := failing()
		t.Fatalf("not shown as stop failing:\n%s\ndaemon:\n%s", out, e.d.out.String())
	}
	if st, err := control.NewClient(socket).Status(context.Background()); err != nil || st.StopFailing != 1 {
		t.Errorf("status: %+v %v", st, err)
	}
	e.d.waitLog("stop command failed (attempt 1)", time.Second)
	// Across a restart the stop is still owed: retried, still failing.
	e.d.kill()
	// Meanwhile the journal and the stop's marker say what the socket said.
	if out, err := exec.Command(bin("sesame"), "grants", "--state-dir", state).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "stop failing (last: stop command: exit status 1)") {
		t.Errorf("sesame grants --state-dir of a failing stop: %v\n%s", err, out)
	}
	tries := strings.Count(strings.Join(e.d.file("held"), "\n"), "try ")
	e.d = startSesamedIn(t, e.pair.Server, e.d.dir, conf)
	if !poll(10*time.Second, func() bool {
		_, ok := failing()
		return ok && strings.Count(strings.Join(e.d.file("held"), "\n"), "try ") > tries
	}) {
		t.Fatalf("not retried after the restart; daemon:\n%s", e.d.out.String())
	}
	if pend, err := journal.ReadPending(state); err != nil || len(pend) != 1 {
		t.Fatalf("journal: %v %v", pend, err)
	}
	// The admin removed the rule by hand and forgets the grant.
	gs, err := control.NewClient(socket).Grants(context.Background())
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants: %v %v", gs, err)
	}
	out, err := exec.Command(bin("sesame"), "revoke", "--socket", socket, "--forget", gs[0].ID).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "forgotten "+gs[0].ID) {
		t.Fatalf("sesame revoke --forget: %v\n%s", err, out)
	}
	if out, _ := failing(); !strings.Contains(out, "no active grants") {
		t.Errorf("after --forget: %s", out)
	}
	if pend, err := journal.ReadPending(state); err != nil || len(pend) != 0 {
		t.Errorf("journal after --forget: %v %v", pend, err)
	}
	log, _ := journal.ReadLog(state)
	if len(log) == 0 || log[len(log)-1].Kind != journal.KindRevoked || !log[len(log)-1].Forgotten {
		t.Errorf("last journal record %+v, want a forgotten revocation", log[len(log)-1])
	}
	n := len(e.d.file("held"))
	time.Sleep(3 * time.Second)
	if len(e.d.file("held")) != n {
		t.Error("the stop ran again after the grant was forgotten")
	}
}

// A start command that fails (exit 127: not found) is logged at warning
// with its status and its output, and sesame grants shows the failure
// (issue 18); its stop command still runs at the deadline, as knockd's.
func TestFailingStartIsShown(t *testing.T) {
	e := newEnv(t, baseConf+`[broken]
	sequence = 7800,8800
	start_command = /nonexistent/open-door %IP%
	stop_command = echo stop %IP% >> {{DIR}}/broken
	cmd_timeout = 60
`)
	socket := filepath.Join(e.d.dir, "control.sock")
	e.knock("7800", "8800")
	e.d.waitLog("broken: command returned non-zero status code (127)", 5*time.Second)
	e.d.waitLog(`[WARN]  sesamed.exec: broken: command output (status 127): "/bin/sh: 1: /nonexistent/open-door: not found"`, 5*time.Second)
	out, err := exec.Command(bin("sesame"), "grants", "--socket", socket).CombinedOutput()
	if want := "active (start failed: exit status 127: /bin/sh: 1: /nonexistent/open-door: not found)"; err != nil || !strings.Contains(string(out), want) {
		t.Errorf("sesame grants: %v; want %q in:\n%s", err, want, out)
	}
	out, err = exec.Command(bin("sesame"), "grants", "--json", "--socket", socket).Output()
	var gs []struct {
		StartError string `json:"start_error"`
	}
	if err != nil || json.Unmarshal(out, &gs) != nil || len(gs) != 1 || !strings.HasPrefix(gs[0].StartError, "exit status 127: ") {
		t.Errorf("sesame grants --json: %v\n%s", err, out)
	}
}
