package daemon

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/common/expfmt"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/metrics"
)

// The real grant manager, with markers, through the measuring wrappers:
// its start command is timed as a start and its stop as a stop (the
// wrappers tell them apart by core/grant's marker names), and the
// grant's latency runs from the open to the start command's end.
func TestTimedCommandsKinds(t *testing.T) {
	m := metrics.New("test")
	m.SetDoors([]string{"ssh", "web"})
	lat := m.NewLatency(time.Minute)
	runner := command.New(command.Options{})
	defer runner.Close()
	cmds := &timedCommands{Commands: runner, m: m, lat: lat, noMarker: map[string]bool{}}
	fw := &recordingFirewall{}
	mgr := grant.New(grant.Options{Commands: cmds, MarkerDir: t.TempDir(), Logger: hclog.NewNullLogger(),
		Firewall: timedFirewall{Firewall: fw, lat: lat}})
	defer mgr.Close(context.Background())
	open := openCounter{g: mgr, m: m, lat: lat}
	ssh := &config.Door{Name: "ssh", Start: config.Command{Text: "sleep 0.2", Set: true},
		Stop: config.Command{Text: "true %IP%", Set: true}, CmdTimeout: 100 * time.Millisecond}
	web := &config.Door{Name: "web", Open: []knock.Port{{Num: 80, Proto: knock.TCP}}, OpenTimeout: time.Hour}
	src := netip.MustParseAddr("192.0.2.9")
	if out := open.Open(ssh, src, time.Now()); out != grant.Granted {
		t.Fatalf("ssh: %v", out)
	}
	if out := open.Open(web, src, time.Now()); out != grant.Granted {
		t.Fatalf("web: %v", out)
	}
	// The ssh grant runs its start, expires after 100 ms and runs its stop.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(scrapeText(t, m), `sesame_command_duration_seconds_count{door="ssh",kind="stop"} 1`) {
		if time.Now().After(deadline) {
			t.Fatalf("no stop timed:\n%s", scrapeText(t, m))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := scrapeText(t, m)
	for _, want := range []string{
		`sesame_command_duration_seconds_count{door="ssh",kind="start"} 1`,
		`sesame_opens_total{door="ssh"} 1`,
		`sesame_opens_total{door="web"} 1`,
		// Two grants applied: one by its start command (at least 0.2 s),
		// one by its native grant.
		"sesame_grant_latency_seconds_count 2",
		`sesame_grant_latency_seconds_bucket{le="0.1"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if lat.Pending() != 0 {
		t.Errorf("%d grants still awaited", lat.Pending())
	}
}

func scrapeText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	mfs, err := m.Own().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&b, mf)
	}
	return b.String()
}

type expiringFirewall struct{ *recordingFirewall }

func (expiringFirewall) ExpiresInKernel() bool { return true }

// The measuring wrapper passes on whether the backend's grants lapse in
// the kernel: the grant manager keeps journal-first for one that does
// not say so.
func TestTimedFirewallPassesKernelExpiry(t *testing.T) {
	var fw grant.Firewall = timedFirewall{Firewall: expiringFirewall{&recordingFirewall{}}}
	if k, ok := fw.(grant.KernelExpiry); !ok || !k.ExpiresInKernel() {
		t.Error("kernel expiry lost by the wrapper")
	}
	fw = timedFirewall{Firewall: &recordingFirewall{}}
	if k, ok := fw.(grant.KernelExpiry); !ok || k.ExpiresInKernel() {
		t.Error("a backend without kernel expiry reported as having it")
	}
}
