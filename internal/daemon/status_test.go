package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/grant"
)

func TestStatusNamesFailingStops(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	gs := []grant.Grant{
		{ID: "a", Door: "ssh", Source: src, State: grant.Active.String()},
		{ID: "b", Door: "ssh", Source: src, State: grant.StopFailing.String(), Attempts: 3, LastError: "stop command: exit status 1"},
	}
	if s := failingSummary(gs[:1]); s != "" {
		t.Errorf("no failing stop: %q", s)
	}
	s := failingSummary(gs)
	for _, want := range []string{"STOP FAILING", "grant b", "ssh", "192.0.2.7", "exit status 1", "sesame grants"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	gs = append(gs, grant.Grant{ID: "c", Door: "web", Source: src, State: grant.StopFailing.String()})
	if s := failingSummary(gs); !strings.Contains(s, "2 grants") {
		t.Errorf("two failing: %q", s)
	}
}
