package main

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/control"
)

// runMainEnv turns the test binary into the sesame command, so tests can
// run the real command line inside a network namespace (ns.Command).
const runMainEnv = "SESAME_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// sesame grants shows who asked for an SPA grant; without SPA grants the
// table keeps knockd-era columns.
func TestPrintGrantsShowsWhoAsked(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	knockG := grant.Grant{ID: "g1", Door: "ssh-door", Source: netip.MustParseAddr("192.0.2.7"), Ports: "22:tcp", Deadline: now.Add(30 * time.Second), State: "active"}
	sshG := grant.Grant{ID: "g2", Door: "ssh", Source: netip.MustParseAddr("2001:db8::7"), Ports: "22:tcp", Deadline: now.Add(time.Minute), State: "active",
		Auth: "ssh", User: "alice@laptop", Key: "SHA256:abc"}
	var b strings.Builder
	printGrants(&b, []grant.Grant{knockG}, now)
	if strings.Contains(b.String(), "USER") {
		t.Errorf("knock grants only, yet a USER column:\n%s", b.String())
	}
	b.Reset()
	printGrants(&b, []grant.Grant{knockG, sshG}, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "USER") || !strings.Contains(lines[2], `"alice@laptop" (ssh)`) || !strings.Contains(lines[1], " - ") {
		t.Errorf("table:\n%s", b.String())
	}
}

// sesame grants --fleet shows each grant's origin and identity, and
// whether this node holds it.
func TestPrintFleetGrants(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l := control.FleetList{Group: "bastions", Node: "b2", Revision: 42, Grants: []control.FleetGrant{
		{ID: "g1", Door: "ssh", Source: netip.MustParseAddr("192.0.2.7"), Ports: "22:tcp", Deadline: now.Add(30 * time.Second), Origin: "b1", Here: true},
		{ID: "g2", Door: "ssh", Source: netip.MustParseAddr("192.0.2.8"), Ports: "22:tcp", Deadline: now.Add(time.Minute), Origin: "b3",
			Identity: "ssh:alice@laptop SHA256:abc"},
	}}
	var b strings.Builder
	printFleetGrants(&b, l, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || lines[0] != "fleet bastions, node b2, revision 42" || !strings.Contains(lines[1], "ORIGIN") ||
		!strings.Contains(lines[2], "30s") || !strings.Contains(lines[2], "b1") || !strings.HasSuffix(lines[2], "yes") ||
		!strings.Contains(lines[3], "ssh:alice@laptop SHA256:abc") || !strings.HasSuffix(lines[3], "no") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	printFleetGrants(&b, control.FleetList{Group: "bastions", Node: "b2"}, now)
	if !strings.Contains(b.String(), "no live grants in the group") {
		t.Errorf("empty group:\n%s", b.String())
	}
}

// sesame status shows the fleet membership on one line, in each of its
// states, and nothing about a fleet when none is configured.
func TestPrintStatusFleet(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		fleet *control.FleetStatus
		want  string
	}{
		{nil, ""},
		{&control.FleetStatus{Group: "bastions", Node: "b1", Connected: true, Revision: 42, Lag: 1, Unpublished: 2},
			"fleet        group bastions as node b1: connected, revision 42, lag 1, 2 grants being shared"},
		{&control.FleetStatus{Group: "bastions", Node: "b1", Revision: 40, Unpublished: 1, Error: "context deadline exceeded"},
			"NOT CONNECTED (last contact never, revision 40, 1 grant waiting to be shared): context deadline exceeded"},
		{&control.FleetStatus{Group: "bastions", Node: "b1", Off: "Fleet_Key: permission denied"},
			"group bastions as node b1: OFF: Fleet_Key: permission denied"},
	} {
		var b strings.Builder
		printStatus(&b, control.Status{Version: "t", Started: now, Fleet: tt.fleet, Healthy: true}, now)
		out := b.String()
		if tt.want == "" {
			if strings.Contains(out, "fleet") {
				t.Errorf("a fleet line without a fleet:\n%s", out)
			}
			continue
		}
		if !strings.Contains(out, tt.want) {
			t.Errorf("no %q in:\n%s", tt.want, out)
		}
	}
}
