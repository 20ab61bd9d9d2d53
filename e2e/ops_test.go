package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// Issue 15's operations with the real sesamed in a namespace: /metrics
// scraped over HTTP while real knocks open doors, grants are extended and
// revoked, and a spoofed flood comes in; the textfile; sesame status and
// sesame reload over the control socket.

const metricsConf = `[options]
	Interface = sesame0
	Firewall = nftables
	Metrics = 127.0.0.1:10171
	Metrics_File = {{DIR}}/sesame.prom
[cmd]
	sequence = 7100,7200
	seq_timeout = 5
	tcpflags = syn
	start_command = echo S %IP% >> {{DIR}}/out
	stop_command = echo E %IP% >> {{DIR}}/out
	cmd_timeout = 2
[native]
	sequence = 7300,7400
	seq_timeout = 5
	tcpflags = syn
	Open = 2222/tcp
	Open_Timeout = 600
[barrier]
	sequence = 65000:udp
`

// scrape GETs /metrics from inside ns, as curl -s localhost:10171/metrics.
func scrape(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	out, err := ns.Run("curl", "-sf", "--max-time", "10", "http://127.0.0.1:10171/metrics")
	if err != nil {
		t.Fatalf("curl /metrics: %v\n%s", err, out)
	}
	return out
}

// sample returns the value of series (name{labels} as the text format
// writes it) in a scrape; -1 when it is not there.
func sample(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// excerpt returns the lines of text whose series start with one of
// prefixes (for the test log).
func excerpt(text string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// series counts the sample lines of Sesame's families.
func series(text string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "sesame_") {
			n++
		}
	}
	return n
}

func TestMetricsMoveWithRealTraffic(t *testing.T) {
	e := newEnv(t, metricsConf)
	server := e.pair.Server
	before := scrape(t, server)
	for _, want := range []string{`sesame_build_info{version=`, "sesame_doors 3", "go_goroutines", "process_resident_memory_bytes",
		`sesame_grants_active{door="cmd"} 0`, "sesame_config_last_reload_success 1", "sesame_rescue_open 0", "sesame_attempts_in_progress 0"} {
		if !strings.Contains(before, want) {
			t.Errorf("first scrape lacks %q:\n%s", want, before)
		}
	}
	pkts := `sesame_knock_packets_total{interface="sesame0"}`

	// Real knocks (Debian's knock): a command door and a native door.
	e.knock("7100", "7200")
	e.knock("7300", "7400")
	if !poll(10*time.Second, func() bool { return len(e.d.file("out")) == 1 }) {
		t.Fatal("the command door did not open")
	}
	var m string
	if !poll(10*time.Second, func() bool {
		m = scrape(t, server)
		return sample(m, "sesame_grant_latency_seconds_count") == 2 && sample(m, `sesame_grants_active{door="native"}`) == 1
	}) {
		t.Fatalf("grants not seen in the metrics:\n%s", m)
	}
	for series, want := range map[string]float64{
		`sesame_opens_total{door="cmd"}`:                                    1,
		`sesame_opens_total{door="native"}`:                                 1,
		`sesame_grants_total{door="cmd",result="granted"}`:                  1,
		`sesame_grants_total{door="native",result="granted"}`:               1,
		`sesame_command_duration_seconds_count{door="cmd",kind="start"}`:    1,
		`sesame_grants_active{door="native"}`:                               1,
		`sesame_grant_latency_seconds_count`:                                2,
		`sesame_capture_drops_total{interface="sesame0"}`:                   0,
		`sesame_revocations_total{door="cmd",reason="expire"}`:              -1,
		`sesame_command_duration_seconds_count{door="native",kind="start"}`: -1,
	} {
		if got := sample(m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := sample(m, pkts); got < 4 {
		t.Errorf("%s = %v, want at least the 4 knocks", pkts, got)
	}
	// A holder knocks again: an extension. The command door's grant
	// expires after cmd_timeout (2 s): its stop runs, a revocation.
	e.knock("7300", "7400")
	if !poll(15*time.Second, func() bool {
		m = scrape(t, server)
		return sample(m, `sesame_grants_total{door="native",result="extended"}`) == 1 &&
			sample(m, `sesame_revocations_total{door="cmd",reason="expire"}`) == 1 &&
			sample(m, `sesame_command_duration_seconds_count{door="cmd",kind="stop"}`) == 1
	}) {
		t.Fatalf("no extension and revocation:\n%s", excerpt(m, "sesame_"))
	}
	if sample(m, `sesame_grants_active{door="cmd"}`) != 0 || sample(m, `sesame_opens_total{door="native"}`) != 2 {
		t.Errorf("after the revocation:\n%s", excerpt(m, "sesame_grants_active", "sesame_opens_total"))
	}
	t.Logf("curl -s localhost:10171/metrics, after real knocks (excerpt):\n%s",
		excerpt(m, "sesame_opens_total", "sesame_grants_total", "sesame_grants_active", "sesame_revocations_total",
			"sesame_knock_packets_total", "sesame_command_duration_seconds_count", "sesame_grant_latency_seconds_count",
			"sesame_grant_latency_seconds_sum"))
	calm := series(m)

	// A spoofed flood: sequences completed from 3000 addresses nobody
	// owns, past the command door's rate limit, and first knocks left
	// hanging from 3000 more. No address becomes a label; the refused
	// opens are all counted, by door.
	seed := seedFor(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	base := netip.MustParseAddr("198.18.0.0").As4()
	const n = 3000
	sent := map[netip.Addr]bool{}
	for len(sent) < 2*n {
		a := base
		a[2], a[3] = byte(rng.IntN(256)), byte(rng.IntN(256))
		src := netip.AddrFrom4(a)
		if sent[src] {
			continue
		}
		sent[src] = true
		e.raw.send(rawsend.Spec{SrcIP: src, DstPort: 7100, Proto: knock.TCP, Flags: knock.SYN})
		if len(sent) <= n {
			e.raw.send(rawsend.Spec{SrcIP: src, DstPort: 7200, Proto: knock.TCP, Flags: knock.SYN})
		}
	}
	e.barrier()
	// The grant manager's summary of the refused opens comes within its
	// 10 s interval.
	// Every flood packet reached the matcher unless a drop counter says
	// otherwise; every open is counted as granted, extended or refused.
	if !poll(40*time.Second, func() bool {
		m = scrape(t, server)
		opens := sample(m, `sesame_opens_total{door="cmd"}`)
		sum := sample(m, `sesame_grants_total{door="cmd",result="granted"}`) + max(0, sample(m, `sesame_grants_total{door="cmd",result="refused"}`)) +
			max(0, sample(m, `sesame_grants_total{door="cmd",result="extended"}`))
		drops := sample(m, `sesame_capture_drops_total{interface="sesame0"}`) + sample(m, "sesame_knock_queue_drops_total")
		return (opens == 1+n || drops > 0 && opens > 1 && opens < 1+n) && sum == opens
	}) {
		t.Fatalf("after %d spoofed opens, opens and grants do not add up:\n%s", n, excerpt(m, "sesame_opens_total", "sesame_grants_total", "sesame_knock"))
	}
	for src := range sent {
		if strings.Contains(m, src.String()+`"`) {
			t.Fatalf("a knocker's address %s is in the metrics", src)
		}
	}
	// Only the flood's own outcomes are new series: refused grants, and
	// perhaps evictions; never one per source.
	if grown := series(m) - calm; grown > 4 {
		t.Errorf("%d new sesame_ series after a flood from %d sources", grown, 2*n)
	}
	if got := sample(m, pkts); got < 3*n {
		t.Errorf("%s = %v after %d flood packets", pkts, got, 3*n)
	}
	t.Logf("after a spoofed flood from %d addresses (%d series before, %d after):\n%s", 2*n, calm, series(m),
		excerpt(m, "sesame_opens_total", "sesame_grants_total", "sesame_attempts", "sesame_knock_packets_total", "sesame_capture_drops_total", "sesame_knock_queue_drops_total"))

	// The textfile holds the same families, without Go's and the
	// process's (node_exporter has its own), and parses.
	var fams map[string]*promFamily
	opens := sample(m, `sesame_opens_total{door="cmd"}`)
	if !poll(20*time.Second, func() bool {
		fams = textfile(t, filepath.Join(e.d.dir, "sesame.prom"))
		f := fams["sesame_opens_total"]
		return f != nil && f.value(`door="cmd"`) == opens
	}) {
		t.Fatalf("textfile not updated within 20 s: %v", fams)
	}
	if fams["go_goroutines"] != nil || fams["sesame_grant_latency_seconds"] == nil || fams["sesame_build_info"] == nil {
		t.Errorf("textfile families: %v", keys(fams))
	}
}

// promFamily is a parsed family of the textfile: its samples' values
// by their label text.
type promFamily struct{ values map[string]float64 }

func (f *promFamily) value(labels string) float64 {
	if v, ok := f.values[labels]; ok {
		return v
	}
	return -1
}

func textfile(t *testing.T, path string) map[string]*promFamily {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("textfile %s does not parse: %v\n%s", path, err, b)
	}
	out := map[string]*promFamily{}
	for name, mf := range mfs {
		f := &promFamily{values: map[string]float64{}}
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			f.values[strings.Join(ls, ",")] = v
		}
		out[name] = f
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// seedFor returns the test's random seed, from SESAME_TEST_SEED when set.
func seedFor(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SESAME_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SESAME_TEST_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (SESAME_TEST_SEED=%d repeats it)", seed, seed)
	return seed
}

const statusConf = `[options]
	Interface = sesame0,later0
	Firewall = nftables
	Rescue_Ports = 2223/tcp
	Rescue_After = 3
[ssh]
	sequence = 7100,7200
	tcpflags = syn
	Open = 2222/tcp
	Open_Timeout = 600
[barrier]
	sequence = 65000:udp
`

// sesame runs the sesame client (on the host: the control socket is a
// file) and returns its output and exit status.
func sesameCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin("sesame"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("sesame %v: %v", args, err)
	}
	return string(out), 0
}

func TestStatusAndReload(t *testing.T) {
	e := newEnv(t, statusConf)
	socket := filepath.Join(e.d.dir, "control.sock")
	conf := filepath.Join(e.d.dir, "sesame.conf")
	e.knock("7100", "7200")
	if !poll(10*time.Second, func() bool {
		out, _ := sesameCLI(t, "grants", "--socket", socket)
		return strings.Contains(out, "ssh")
	}) {
		t.Fatal("no grant")
	}

	// A valid edit: reload --wait says it is in force.
	os.WriteFile(conf, []byte(statusConf+"[web]\n\tsequence = 7300\n\tstart_command = true\n"), 0o600)
	out, code := sesameCLI(t, "reload", "--wait", "--socket", socket)
	if code != 0 || !strings.Contains(out, "in force (3 doors)") {
		t.Fatalf("reload --wait of a valid edit: exit %d\n%s", code, out)
	}
	// Unchanged: still 0.
	if out, code := sesameCLI(t, "reload", "--wait", "--socket", socket); code != 0 || !strings.Contains(out, "already in force") {
		t.Errorf("reload --wait unchanged: exit %d\n%s", code, out)
	}
	// An invalid edit: exit 1 with the file and line; the old config runs.
	os.WriteFile(conf, []byte(statusConf+"[web]\n\tsequence = 7300\n\tseq_timeout = soon\n"), 0o600)
	out, code = sesameCLI(t, "reload", "--wait", "--socket", socket)
	wantErr := conf + ":15: "
	if code != 1 || !strings.Contains(out, wantErr) {
		t.Fatalf("reload --wait of an invalid edit: exit %d, want 1 with %q:\n%s", code, wantErr, out)
	}
	// The rescue held open by an admin (sesame rescue reads the rescue's
	// settings from a config: a valid copy, the file is broken now).
	os.WriteFile(conf+".rescue", []byte(statusConf), 0o600)
	if out, err := e.pair.Server.Run(bin("sesame"), "rescue", "open", "-c", conf+".rescue"); err != nil {
		t.Fatalf("sesame rescue open: %v\n%s", err, out)
	}

	var st struct {
		Version string
		Reload  struct {
			OK      bool
			Trigger string
			Error   string
		}
		Interfaces []struct{ Name, State, Why string }
		Doors      []struct {
			Name, Kind string
			Grants     int
		}
		Grants   int
		Rescue   struct{ Configured, Open, Held bool }
		Journal  struct{ Bytes int64 }
		Firewall struct {
			Backend string
		}
		Healthy  bool
		Problems []string
	}
	var js string
	if !poll(10*time.Second, func() bool {
		js, code = sesameCLI(t, "status", "--json", "--socket", socket)
		st.Rescue.Open = false
		return json.Unmarshal([]byte(js), &st) == nil && st.Rescue.Open
	}) {
		t.Fatalf("status --json never shows the rescue open: exit %d\n%s", code, js)
	}
	if code != 1 || st.Healthy || st.Reload.OK || st.Reload.Trigger != "sesame reload" || !strings.Contains(st.Reload.Error, wantErr) {
		t.Errorf("status --json: exit %d, %+v", code, st)
	}
	if len(st.Interfaces) != 2 || st.Interfaces[0].State != "capturing" || st.Interfaces[1].Name != "later0" || st.Interfaces[1].State != "waiting" || st.Interfaces[1].Why == "" {
		t.Errorf("interfaces %+v", st.Interfaces)
	}
	if len(st.Doors) != 3 || st.Doors[0].Name != "ssh" || st.Doors[0].Kind != "sequence" || st.Doors[0].Grants != 1 || st.Grants != 1 {
		t.Errorf("doors %+v, grants %d", st.Doors, st.Grants)
	}
	if st.Firewall.Backend != "nftables" || st.Journal.Bytes == 0 || !st.Rescue.Held || st.Version == "" {
		t.Errorf("status %+v", st)
	}
	problems := strings.Join(st.Problems, "\n")
	for _, want := range []string{"last reload failed", wantErr, "interface later0 is not capturing", "rescue OPEN"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}
	human, code := sesameCLI(t, "status", "--socket", socket)
	if code != 1 {
		t.Errorf("status exit %d, want 1", code)
	}
	for _, want := range []string{"last reload", "FAILED", wantErr, "sesame0: capturing", "later0: WAITING", "ssh: sequence, 1 grant",
		"rescue", "rescue OPEN", "firewall", "nftables", "journal", "UNHEALTHY:"} {
		if !strings.Contains(human, want) {
			t.Errorf("sesame status lacks %q:\n%s", want, human)
		}
	}
	t.Logf("sesame status (exit %d):\n%s", code, human)

	// Fixed file, rescue closed, but later0 still waits: unhealthy still.
	os.WriteFile(conf, []byte(statusConf), 0o600)
	if out, code := sesameCLI(t, "reload", "--wait", "--socket", socket); code != 0 {
		t.Fatalf("reload of the fixed file: exit %d\n%s", code, out)
	}
	e.pair.Server.Run(bin("sesame"), "rescue", "close", "-c", conf)
	out, code = sesameCLI(t, "status", "--socket", socket)
	if code != 1 || strings.Contains(out, "last reload failed") || !strings.Contains(out, "later0") {
		t.Errorf("after the fix: exit %d\n%s", code, out)
	}
	// SIGHUP keeps working.
	e.d.cmd.Process.Signal(syscall.SIGHUP)
	e.d.waitLog("trigger=SIGHUP", 10*time.Second)

	// No daemon: exit 3.
	e.d.stop()
	if out, code := sesameCLI(t, "status", "--socket", socket); code != 3 || !strings.Contains(out, "cannot reach sesamed") {
		t.Errorf("status without a daemon: exit %d\n%s", code, out)
	}
	if out, code := sesameCLI(t, "reload", "--wait", "--socket", socket); code != 3 {
		t.Errorf("reload without a daemon: exit %d\n%s", code, out)
	}
}

// A daemon whose interfaces all capture, with a good config and no
// rescue open, is healthy: exit 0.
func TestStatusHealthy(t *testing.T) {
	e := newEnv(t, baseConf)
	out, code := sesameCLI(t, "status", "--socket", filepath.Join(e.d.dir, "control.sock"))
	if code != 0 || !strings.Contains(out, "\nhealthy") || !strings.Contains(out, "last reload\tOK") && !strings.Contains(out, "OK at") {
		t.Errorf("healthy daemon: exit %d\n%s", code, out)
	}
}
