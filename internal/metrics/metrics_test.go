package metrics

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/grant"
)

// logger returns an hclog logger whose entries, at every level, reach
// m's sink, as the daemon's eventlog.Logger does.
func logger(m *Metrics) hclog.InterceptLogger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Level: hclog.Off, Output: &strings.Builder{}})
	l.RegisterSink(m.Sink())
	return l
}

// The real grant manager, flooded past its start commands' rate limit:
// what the sink counts from its log entries (the held-back refusals
// arrive in the limiter's summary) equals the outcomes Open returned.
func TestSinkCountsWhatTheGrantManagerDid(t *testing.T) {
	m := New("test")
	m.SetDoors([]string{"ssh"})
	log := logger(m)
	runner := command.New(command.Options{Logger: log, Burst: 5, Rate: 0.001})
	defer runner.Close()
	mgr := grant.New(grant.Options{Commands: runner, Logger: log, LogEvery: time.Hour})
	door := &config.Door{Name: "ssh", Start: config.Command{Text: "true", Set: true},
		Stop: config.Command{Text: "true", Set: true}, CmdTimeout: time.Hour}
	outcomes := map[grant.Outcome]int{}
	now := time.Now()
	for i := 0; i < 40; i++ {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		outcomes[mgr.Open(door, src, now)]++
		m.Opened(door.Name)
	}
	// A repeat knock by a holder extends its grant, once applied.
	first := netip.AddrFrom4([4]byte{192, 0, 2, 1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		gs := mgr.List()
		if len(gs) == outcomes[grant.Granted] && gs[0].State == grant.Active.String() || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	outcomes[mgr.Open(door, first, now.Add(time.Second))]++
	if err := mgr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if outcomes[grant.Granted] != 5 || outcomes[grant.RateLimited] != 35 || outcomes[grant.Extended] != 1 {
		t.Fatalf("outcomes %v: the runner's limit did not apply as the test expects", outcomes)
	}
	for result, want := range map[string]int{ResultGranted: 5, ResultRefused: 35, ResultExtended: 1} {
		if got := testutil.ToFloat64(m.grants.WithLabelValues("ssh", result)); got != float64(want) {
			t.Errorf("sesame_grants_total{result=%q} = %v, want %d", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.opens.WithLabelValues("ssh")); got != 40 {
		t.Errorf("opens %v", got)
	}
}

// The routing rules on synthetic entries, as producers log them: an SPA
// refusal (Refused with auth) counts by reason and is no grant refusal;
// a revocation counts once, when done, by reason; each failed stop
// attempt counts; steps and errors of other kinds count nothing.
func TestSinkRouting(t *testing.T) {
	m := New("test")
	m.SetDoors([]string{"ssh"})
	log := logger(m)
	src := netip.MustParseAddr("192.0.2.7")
	ev := event.Event{Kind: event.Refused, Source: src}
	log.Warn("spa refused", ev.Args(event.KeyAuth, "fwknop", event.KeyReason, "bad HMAC")...)
	log.Warn("spa refused", ev.Args(event.KeyAuth, "ssh", event.KeyReason, "unknown-key")...)
	log.Warn("spa refusals held back", event.Event{Kind: event.Refused}.Args(event.KeyAuth, "fwknop", event.KeyReason, "bad HMAC", event.KeySuppressed, uint64(7))...)
	rv := event.Event{Kind: event.Revoke, Door: "ssh", Source: src, GrantID: "g1"}
	log.Error("stop failed", rv.Args(event.KeyAttempt, 1, "error", "exit status 1")...)
	log.Error("stop failed", rv.Args(event.KeyAttempt, 2, "error", "exit status 1")...)
	log.Error("journal failed", rv.Args()...)
	log.Info("stop succeeded at attempt 3", rv.Args()...)
	log.Info("access revoked", rv.Args(event.KeyReason, "expire", event.KeyStatus, "done")...)
	log.Warn("forgotten", rv.Args(event.KeyReason, "forgotten", event.KeyStatus, "forgotten")...)
	log.Error("native grant failed", event.Event{Kind: event.Grant, Door: "ssh", Source: src, GrantID: "g2"}.Args()...)
	log.Warn("reconcile restored", event.Event{Kind: event.Grant, Source: src, GrantID: "g2"}.Args()...)
	log.Info("OPEN SESAME", event.Event{Kind: event.Open, Door: "ssh", Source: src}.Args(event.KeyOutcome, grant.RanStart.String())...)
	log.Info("OPEN SESAME", event.Event{Kind: event.Open, Door: "ssh", Source: src}.Args(event.KeyOutcome, grant.Extended.String())...)
	log.Info("no kind", "door", "ssh", event.KeyStatus, "done")

	for reason, want := range map[string]float64{"bad_hmac": 8, "unknown_key": 1} {
		if got := testutil.ToFloat64(m.spaRefusals.WithLabelValues(reason)); got != want {
			t.Errorf("spa refusals %s = %v, want %v", reason, got, want)
		}
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"grant refusals", testutil.ToFloat64(m.grants.WithLabelValues("ssh", ResultRefused)), 0},
		{"granted", testutil.ToFloat64(m.grants.WithLabelValues("ssh", ResultGranted)), 1},
		{"stop failures", testutil.ToFloat64(m.stopFailures.WithLabelValues("ssh")), 2},
		{"revocations expire", testutil.ToFloat64(m.revocations.WithLabelValues("ssh", "expire")), 1},
		{"revocations forgotten", testutil.ToFloat64(m.revocations.WithLabelValues("ssh", "forgotten")), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// Door labels follow the running config: a reload that removes a door
// deletes its series and later events of it are not counted; doors from
// elsewhere are capped; reasons are capped per family.
func TestLabelsBounded(t *testing.T) {
	m := New("test")
	m.SetDoors([]string{"a", "b"})
	m.Opened("a")
	m.Opened("b")
	m.Command("b", CommandStart, time.Second)
	m.SetDoors([]string{"a"})
	m.Opened("b")
	out := scrape(t, m)
	if strings.Contains(out, `door="b"`) {
		t.Errorf("removed door b still has series:\n%s", out)
	}
	if !strings.Contains(out, `sesame_opens_total{door="a"} 1`) {
		t.Errorf("door a lost:\n%s", out)
	}
	m.SetDoors([]string{"a", "b"})
	m.Opened("b")
	if got := testutil.ToFloat64(m.opens.WithLabelValues("b")); got != 1 {
		t.Errorf("door b back in the config: %v", got)
	}
	for i := 0; i < MaxExtraDoors+50; i++ {
		m.Opened(fmt.Sprintf("spa#%d", i))
	}
	if n := testutil.CollectAndCount(m.opens); n != 2+MaxExtraDoors+1 {
		t.Errorf("%d opens series, want %d", n, 2+MaxExtraDoors+1)
	}
	if got := testutil.ToFloat64(m.opens.WithLabelValues(OtherDoor)); got != 50 {
		t.Errorf("%s = %v", OtherDoor, got)
	}
	log := logger(m)
	for i := 0; i < MaxReasons+10; i++ {
		log.Warn("x", event.Event{Kind: event.Refused}.Args(event.KeyAuth, "fwknop", event.KeyReason, fmt.Sprintf("reason %d", i))...)
	}
	if n := testutil.CollectAndCount(m.spaRefusals); n != MaxReasons+1 {
		t.Errorf("%d reasons, want %d", n, MaxReasons+1)
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{"bad HMAC": "bad_hmac", "unknown-key": "unknown_key", "replay cache full": "replay_cache_full",
		"  --x--  ": "x", "": "", "NAT refused": "nat_refused", "reason(17)": "reason_17"} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// A scrape reads the state through the Source; families of a state not
// read (the engine did not answer) are left out rather than shown as 0.
func TestStateFamilies(t *testing.T) {
	m := New("1.2.3")
	if out := scrape(t, m); !strings.Contains(out, `sesame_build_info{version="1.2.3"} 1`) || strings.Contains(out, "sesame_doors") {
		t.Errorf("before SetSource:\n%s", out)
	}
	at := time.Unix(1700000000, 0)
	m.SetSource(func(context.Context) State {
		return State{Doors: 2, Interfaces: []Interface{{Name: "eth0", Packets: 5, Drops: 1}}, QueueDrops: 3,
			GrantsActive: map[string]int{"ssh": 1, "web": 0}, RescueOpen: true, ReloadOK: false, ReloadSuccess: at}
	})
	out := scrape(t, m)
	for _, want := range []string{"sesame_doors 2", `sesame_knock_packets_total{interface="eth0"} 5`, `sesame_capture_drops_total{interface="eth0"} 1`,
		"sesame_knock_queue_drops_total 3", `sesame_grants_active{door="ssh"} 1`, `sesame_grants_active{door="web"} 0`,
		"sesame_rescue_open 1", "sesame_config_last_reload_success 0", "sesame_config_last_reload_success_timestamp_seconds 1.7e+09"} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sesame_attempts_in_progress") {
		t.Errorf("attempts shown without the engine's answer:\n%s", out)
	}
	if strings.Contains(out, "sesame_fleet_") {
		t.Errorf("fleet families without a fleet:\n%s", out)
	}
	m.SetSource(func(context.Context) State {
		return State{Fleet: &Fleet{Connected: false, Revision: 41, Lag: 7, Unpublished: 2, Snapshots: 1, Refused: 3}}
	})
	out = scrape(t, m)
	for _, want := range []string{"sesame_fleet_connected 0", "sesame_fleet_revision 41", "sesame_fleet_lag_revisions 7", "sesame_fleet_unpublished_grants 2",
		"sesame_fleet_snapshots_total 1", "sesame_fleet_refused_values_total 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(scrapeAll(t, m), "go_goroutines") || strings.Contains(out, "go_goroutines") {
		t.Error("the Go collector belongs to /metrics, not to the textfile")
	}
}

func TestLatencyBounded(t *testing.T) {
	m := New("test")
	l := m.NewLatency(time.Minute)
	t0 := time.Now()
	l.Expect("a", t0)
	l.Applied("a", t0.Add(30*time.Millisecond))
	l.Applied("a", t0.Add(time.Hour)) // once only
	l.Applied("never expected", t0)
	if n := testutil.CollectAndCount(m.latency); n != 1 {
		t.Fatalf("%d", n)
	}
	out := scrape(t, m)
	if !strings.Contains(out, "sesame_grant_latency_seconds_count 1") || !strings.Contains(out, `sesame_grant_latency_seconds_bucket{le="0.025"} 0`) ||
		!strings.Contains(out, `sesame_grant_latency_seconds_bucket{le="0.05"} 1`) {
		t.Errorf("latency:\n%s", out)
	}
	for i := 0; i < MaxPending+100; i++ {
		l.Expect(fmt.Sprint(i), t0)
	}
	if l.Pending() != MaxPending {
		t.Errorf("pending %d", l.Pending())
	}
	// Old entries make room.
	l.Expect("late", t0.Add(2*time.Minute))
	if l.Pending() != 1 {
		t.Errorf("pending after expiry %d", l.Pending())
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	var b strings.Builder
	if err := writeText(&b, m.Own()); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func scrapeAll(t *testing.T, m *Metrics) string {
	t.Helper()
	var b strings.Builder
	if err := writeText(&b, m.Gatherer()); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
