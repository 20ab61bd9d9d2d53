package metrics

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README's alert rules and family table name families that exist:
// a renamed family fails here rather than in an admin's Prometheus.
func TestREADMENamesExistingFamilies(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Monitoring")
	if start < 0 {
		t.Fatal("README has no Monitoring section")
	}
	section := readme[start:]
	if end := strings.Index(section[3:], "\n## "); end > 0 {
		section = section[:end+3]
	}
	m := New("test")
	m.SetDoors([]string{"d"})
	m.Opened("d")
	m.Command("d", CommandStart, time.Second)
	m.GrantLatency(time.Second)
	m.grants.WithLabelValues("d", ResultGranted).Inc()
	m.revocations.WithLabelValues("d", "expire").Inc()
	m.stopFailures.WithLabelValues("d").Inc()
	m.spaRefusals.WithLabelValues("stale").Inc()
	m.SetSource(func(context.Context) State {
		return State{EngineOK: true, Interfaces: []Interface{{Name: "eth0"}}, ReloadSuccess: time.Now(), GrantsActive: map[string]int{"d": 0},
			Fleet: &Fleet{}}
	})
	mfs, err := m.Own().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	named := regexp.MustCompile(`sesame_[a-z_]*[a-z]`).FindAllString(section, -1)
	if len(named) < 15 {
		t.Fatalf("only %d family names in the Monitoring section", len(named))
	}
	for _, n := range named {
		if !have[n] {
			t.Errorf("README names %s, which is no family (have %v)", n, have)
		}
	}
	if !strings.Contains(section, "expr: sesame_rescue_open == 1") || !strings.Contains(section, "sesame_stop_failures_total") || !strings.Contains(section, "sesame_capture_drops_total") {
		t.Error("the three alert rules (rescue open, stop failures, capture drops) are not all there")
	}
}
