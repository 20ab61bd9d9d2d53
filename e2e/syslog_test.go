package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/systemdtest"
)

// UseSyslog under systemd (issue 18): Debian's knockd.conf has it, and
// /dev/log is journald's socket there, so every knockd line reached
// `journalctl -u sesamed` twice (journald's native entry and the syslog
// copy). sesamed skips the syslog copy when journald is the syslog
// socket, with a notice; each line is in the journal once. Checked under
// the shipped unit (PrivateDevices=yes: a private /dev) and without its
// private /dev.
func TestUseSyslogUnderSystemd(t *testing.T) {
	netnstest.RequireRoot(t)
	unit, err := os.ReadFile("../packaging/sesamed.service")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(sdConf(""), "[options]\n", "[options]\n\tUseSyslog\n", 1)
	s := systemdtest.Boot(t, systemdtest.Options{
		Units: map[string]string{"sesamed.service": string(unit)},
		Files: map[string]systemdtest.FileSpec{
			"/usr/sbin/sesamed":       {Source: bin("sesamed"), Mode: 0o755},
			"/usr/bin/sesame":         {Source: bin("sesame"), Mode: 0o755},
			"/etc/sesame/sesame.conf": {Content: []byte(conf), Mode: 0o600},
		},
	})
	peer := s.PeerNS(t)
	for i, dropIn := range []string{"", "[Service]\nPrivateDevices=no\n"} {
		if dropIn != "" {
			if err := s.WriteFile("/run/systemd/system/sesamed.service.d/dev.conf", []byte(dropIn), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Systemctl("daemon-reload"); err != nil {
				t.Fatal(err)
			}
		}
		// What this run logs comes after the journal's current end (a
		// cursor: a time with journalctl's one-second resolution took in
		// the previous run's lines on a loaded machine).
		head, _ := s.Journalctl("-n", "0", "--show-cursor")
		_, cursor, ok := strings.Cut(head, "-- cursor: ")
		if !ok {
			t.Fatalf("no journal cursor in %q", head)
		}
		cursor = strings.TrimSpace(cursor)
		if _, err := s.Systemctl("restart", "sesamed"); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if !knockOpens(t, s, peer, "ssh", "7000", "8000", "9000") {
			t.Fatalf("run %d: knock did not open", i)
		}
		// Let a second copy, if any, arrive.
		time.Sleep(time.Second)
		out, _ := s.Journalctl("-u", "sesamed", "-o", "cat", "--after-cursor", cursor)
		for _, line := range []string{"starting up, listening on sesame0", fmt.Sprintf("%s: ssh: OPEN SESAME", netnstest.ClientAddr4)} {
			if n := strings.Count(out, line); n != 1 {
				t.Errorf("run %d (drop-in %q): %q is in the journal %d times:\n%s", i, dropIn, line, n, out)
			}
		}
		if !strings.Contains(out, "UseSyslog: /dev/log is journald's socket") {
			t.Errorf("run %d: no notice that syslog is skipped:\n%s", i, out)
		}
	}
}
