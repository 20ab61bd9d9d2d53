package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/systemdtest"
)

// Stop semantics under the shipped unit and a real systemd (issue 18): a
// clean `systemctl stop` disarms the rescue, so it does not open
// Rescue_After later, and says at warning what stays closed or open while
// sesamed is stopped; a failure (SIGKILL) opens it at once through the
// unit's ExecStopPost, and the restart closes it.

const stopConf = `[options]
	Interface = sesame0
	Firewall = nftables
	Rescue_Ports = 2222/tcp
	Rescue_After = 2
[ssh]
	sequence = 7000,8000,9000
	tcpflags = syn
	start_command = echo open %IP% >> /var/log/sesame/knocks
	stop_command = echo close %IP% >> /var/log/sesame/knocks
	cmd_timeout = 60
[native]
	sequence = 7100,7200
	Open = 22/tcp
`

func TestStopUnderSystemd(t *testing.T) {
	netnstest.RequireRoot(t)
	unit, err := os.ReadFile("../packaging/sesamed.service")
	if err != nil {
		t.Fatal(err)
	}
	s := systemdtest.Boot(t, systemdtest.Options{
		Units: map[string]string{"sesamed.service": string(unit)},
		Files: map[string]systemdtest.FileSpec{
			"/usr/sbin/sesamed":       {Source: bin("sesamed"), Mode: 0o755},
			"/usr/bin/sesame":         {Source: bin("sesame"), Mode: 0o755},
			"/etc/sesame/sesame.conf": {Content: []byte(stopConf), Mode: 0o600},
		},
	})
	peer := s.PeerNS(t)
	rescue := func() string {
		out, _ := s.Run("sesame", "rescue", "status", "-c", "/etc/sesame/sesame.conf")
		return strings.TrimSpace(out)
	}
	start := func() {
		t.Helper()
		if _, err := s.Systemctl("start", "sesamed"); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start()
	if st := rescue(); !strings.HasPrefix(st, "rescue closed") {
		t.Fatalf("rescue after the start: %s", st)
	}
	if !knockOpens(t, s, peer, "ssh", "7000", "8000", "9000") {
		t.Fatal("knock did not open")
	}

	if _, err := s.Systemctl("stop", "sesamed"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"rescue disarmed: sesamed stopped cleanly, so 2222:tcp does not open while it is stopped",
		"stopped: nftables keeps dropping new connections to 22:tcp from every address without a grant while sesamed is stopped",
		"stopped: 1 grant with a stop command stays open while sesamed is stopped",
	} {
		if err := s.WaitLog("sesamed", want, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	// At warning: journalctl -p warning shows them.
	if out, _ := s.Journalctl("-u", "sesamed", "-p", "warning", "-o", "cat"); !strings.Contains(out, "rescue disarmed") || !strings.Contains(out, "keeps dropping") {
		t.Errorf("the stop's lines are not at warning:\n%s", out)
	}
	// Past Rescue_After (2 s) the rescue has not opened.
	stopped := time.Now()
	for time.Since(stopped) < 4*time.Second {
		if st := rescue(); strings.HasPrefix(st, "rescue OPEN") {
			t.Fatalf("%v after a clean stop: %s", time.Since(stopped).Round(100*time.Millisecond), st)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A failure opens it at once (ExecStopPost), and the restart
	// (Restart=on-failure, RestartSec=2s) closes it.
	start()
	if st := rescue(); !strings.HasPrefix(st, "rescue closed") {
		t.Fatalf("rescue after the second start: %s", st)
	}
	if _, err := s.Systemctl("kill", "--signal=KILL", "sesamed"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sesamed", "rescue port open: 2222:tcp reachable (sesamed stopped: SERVICE_RESULT=signal", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sesamed", "rescue port closed: 2222:tcp (sesamed started and is healthy)", 15*time.Second); err != nil {
		t.Fatal(err)
	}
}
