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

// TestPackagedUnitCaptureFilter runs sesamed in the packaged unit's
// sandbox (packaging/sesamed.service as shipped) under a real systemd:
// the capture runs the eBPF filter there; a drop-in that takes CAP_BPF
// and bpf(2) away, as the unit's comment tells admins, makes it run the
// classic filter and say why; knocks open either way.
func TestPackagedUnitCaptureFilter(t *testing.T) {
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
			"/etc/sesame/sesame.conf": {Content: []byte(sdConf("")), Mode: 0o600},
		},
	})
	peer := s.PeerNS(t)
	opens := func() int {
		out, _ := s.Journalctl("-u", "sesamed", "-o", "cat")
		return strings.Count(out, fmt.Sprintf("%s: ssh: OPEN SESAME", netnstest.ClientAddr4))
	}
	knock := func() {
		t.Helper()
		before := opens()
		if !poll(5*time.Second, func() bool {
			peer.Run("knock", netnstest.ServerAddr4.String(), "7000", "8000", "9000")
			return opens() > before
		}) {
			out, _ := s.Journalctl("-u", "sesamed", "-o", "cat")
			t.Fatalf("knock did not open:\n%s", out)
		}
	}

	if _, err := s.Systemctl("start", "sesamed"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sesamed", "capture filter on sesame0: eBPF, exact", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	knock()

	if err := s.WriteFile("/run/systemd/system/sesamed.service.d/nobpf.conf",
		[]byte("[Service]\nCapabilityBoundingSet=~CAP_BPF\nSystemCallFilter=~bpf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"daemon-reload"}, {"restart", "sesamed"}} {
		if _, err := s.Systemctl(args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitActive("sesamed", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitLog("sesamed", "eBPF not available: capture: eBPF not permitted", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, _ := s.Journalctl("-u", "sesamed", "-o", "cat"); !strings.Contains(out, "capture filter on sesame0: classic BPF") {
		t.Fatalf("no classic filter logged:\n%s", out)
	}
	knock()
}
