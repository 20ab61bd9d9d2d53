package main

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// The capture rows: what traffic that is not a knock costs each daemon
// when the config has 10,000 knock ports and the host 1,000 IPv4 and
// 1,000 IPv6 addresses (issue 16, item 4), and with 1,000 knock ports on
// the interface's own addresses, about what knockd can still compile a
// filter for (libpcap runs out of memory past that). The generator sends
// TCP SYNs and UDP datagrams to every port no door uses, from spoofed
// sources, to the server's address; the daemons should drop all of it.
// sesamed runs once as it is (its eBPF filter) and once without CAP_BPF
// and CAP_SYS_ADMIN (the classic filter it falls back to, which cannot
// hold the larger config exactly); knockd runs on the same knockd.conf.

const (
	capturePortsPerDoor = 10
	captureAddrs        = 1000 // of each family, on the server's interface
	captureSeed         = 16
)

// captureConfigs are the configs: doors of capturePortsPerDoor ports,
// and whether the server gets captureAddrs more addresses of each family.
var captureConfigs = []struct {
	doors int
	addrs bool
}{{1000, true}, {100, false}}

// captureVariant is one daemon setup of the capture rows.
type captureVariant struct {
	Name    string `json:"name"`
	Daemon  string `json:"daemon"` // "sesamed" or "knockd"
	Classic bool   `json:"classic"`
}

var (
	captureEBPF    = captureVariant{Name: "sesamed, eBPF filter", Daemon: "sesamed"}
	captureClassic = captureVariant{Name: "sesamed without CAP_BPF, classic filter", Daemon: "sesamed", Classic: true}
	captureKnockd  = captureVariant{Name: "knockd", Daemon: "knockd"}
)

// noBPF runs a command without the capabilities eBPF needs, as a unit
// whose bounding set lacks them would.
var noBPF = []string{"setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon", "--"}

// captureRow is one daemon at one rate of unrelated traffic.
type captureRow struct {
	Variant captureVariant `json:"variant"`
	Ports   int            `json:"ports"` // knock ports in the config
	Addrs   int            `json:"addrs"` // the server's addresses besides its own two
	Rate    float64        `json:"rate"`  // target packets/s; 0: as fast as the generator can
	Filter  string         `json:"filter,omitempty"`
	loadSample
}

// loadSample is what a daemon did over a window of generated traffic.
type loadSample struct {
	Gen     *genReport `json:"gen,omitempty"`
	Seconds float64    `json:"seconds"` // the measured window
	// DaemonCPU is the daemon's user+sys time over the window, in
	// percent of one core (DaemonTicks of USER_HZ).
	DaemonCPU   float64 `json:"daemon_cpu_pct"`
	DaemonTicks int64   `json:"daemon_ticks"`
	// SocketDrops are frames the kernel dropped because the daemon's
	// socket was full, over the window (-1: unknown); VethDrops what the
	// veth dropped over the whole run.
	SocketDrops int64  `json:"socket_drops"`
	VethDrops   uint64 `json:"veth_drops"`
	Err         string `json:"error,omitempty"`
}

// captureConfig writes the capture rows' knockd.conf into dir: 1,000
// doors of 10 distinct ports each (a third of them UDP), the same for
// every run, and returns the file with the noise's avoid list (every
// knock port and the protected one).
func captureConfig(dir string, doors int) (conf, avoidFile string, err error) {
	rng := rand.New(rand.NewSource(captureSeed))
	seen := map[uint16]bool{protectedPort: true}
	var b strings.Builder
	fmt.Fprintf(&b, "[options]\n\tInterface = %s\n\tLogFile = %s/knock.log\n", serverIf, dir)
	var avoid []string
	for d := 0; d < doors; d++ {
		var seq []string
		for len(seq) < capturePortsPerDoor {
			p := uint16(1024 + rng.Intn(65536-1024))
			if seen[p] {
				continue
			}
			seen[p] = true
			avoid = append(avoid, strconv.Itoa(int(p)))
			k := knock.Port{Num: p, Proto: knock.TCP}
			if rng.Intn(3) == 0 {
				k.Proto = knock.UDP
			}
			seq = append(seq, knock.FormatSequence([]knock.Port{k}))
		}
		fmt.Fprintf(&b, "[door%d]\n\tsequence = %s\n\tseq_timeout = 5\n\tcommand = /bin/true\n", d, strings.Join(seq, ","))
	}
	conf = filepath.Join(dir, "knockd.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	avoidFile = filepath.Join(dir, "avoid")
	return conf, avoidFile, os.WriteFile(avoidFile, []byte(strings.Join(avoid, ",")), 0o644)
}

// captureAddrLines are the ip -batch lines that give the server's
// interface 1,000 more IPv4 and IPv6 addresses.
func captureAddrLines() []string {
	var lines []string
	a4, a6 := netip.MustParseAddr("10.79.0.1"), netip.MustParseAddr("fd79::1")
	for i := 0; i < captureAddrs; i++ {
		lines = append(lines, fmt.Sprintf("addr add %s/16 dev %s", a4, serverIf),
			fmt.Sprintf("addr add %s/64 dev %s nodad", a6, serverIf))
		a4, a6 = a4.Next(), a6.Next()
	}
	return lines
}

func (r *runner) runCapture(res *results) error {
	for _, cc := range captureConfigs {
		addrs := 0
		if cc.addrs {
			addrs = 2 * captureAddrs
		}
		for _, v := range []captureVariant{captureEBPF, captureClassic, captureKnockd} {
			res.Capture = append(res.Capture, r.captureRows(v, cc.doors, addrs)...)
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// captureRows runs v on a config of doors doors, on a server with addrs
// more addresses (0 or 2 × captureAddrs), in fresh namespaces, and
// measures it at each rate.
func (r *runner) captureRows(v captureVariant, doors, addrs int) []captureRow {
	ports := doors * capturePortsPerDoor
	rows := make([]captureRow, len(r.o.CaptureRates))
	for i, rate := range r.o.CaptureRates {
		rows[i] = captureRow{Variant: v, Ports: ports, Addrs: addrs, Rate: rate, loadSample: loadSample{SocketDrops: -1}}
	}
	fail := func(err error) []captureRow {
		for i := range rows {
			if rows[i].Err == "" && rows[i].Gen == nil {
				rows[i].Err = err.Error()
			}
		}
		return rows
	}
	r.n++
	dir := filepath.Join(r.work, fmt.Sprintf("%02d-capture-%d-%s", r.n, ports, v.Daemon))
	if v.Classic {
		dir += "-classic"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	r.progress("capture: %s, %d knock ports, %d more addresses, unrelated traffic at %v packets/s", v.Name, ports, addrs, r.o.CaptureRates)
	conf, avoid, err := captureConfig(dir, doors)
	if err != nil {
		return fail(err)
	}
	p, err := r.lab.newPair(nil)
	if err != nil {
		return fail(err)
	}
	s := &stage{p: p, dir: dir}
	defer r.teardown(s)
	if addrs > 0 {
		if err := p.srv.Batch(captureAddrLines()); err != nil {
			return fail(err)
		}
	}
	if v.Daemon != "" {
		var argv []string
		if v.Daemon == "knockd" {
			argv = []string{"knockd", "-c", conf, "-i", serverIf}
		} else {
			argv = []string{r.sesamed, "-c", conf, "-i", serverIf, "--state-dir", dir + "/state", "--socket", dir + "/control.sock"}
			if v.Classic {
				argv = append(append([]string(nil), noBPF...), argv...)
			}
		}
		logPath := filepath.Join(dir, "daemon.out")
		if s.daemon, err = r.lab.start(p.srv, v.Daemon, argv, false, logPath); err != nil {
			return fail(err)
		}
		ready := func() bool {
			return strings.Contains(readFileString(logPath), "listening on") ||
				strings.Contains(readFileString(filepath.Join(dir, "knock.log")), "listening on")
		}
		// knockd compiles one pcap filter for 10,000 ports: give it time.
		if err := s.daemon.waitFor(2*time.Minute, "listening on", ready); err != nil {
			return fail(fmt.Errorf("%w %s", err, strings.TrimSpace(tail(readFileString(logPath), 300))))
		}
		filter := captureFilterLine(readFileString(logPath))
		for i := range rows {
			rows[i].Filter = filter
		}
	}
	for i, rate := range r.o.CaptureRates {
		rows[i].loadSample = r.measureLoad(s, modeNoise, rate, "--avoid-file", avoid)
		if r.ctx.Err() != nil {
			break
		}
	}
	return rows
}

// captureFilterLine is what sesamed logged about its capture filter.
func captureFilterLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "capture filter on "+serverIf+": "); i >= 0 {
			l = l[i+len("capture filter on "+serverIf+": "):]
			// hclog appends key=value fields after the message.
			if j := strings.Index(l, ": interface="); j >= 0 {
				l = l[:j]
			}
			if j := strings.Index(l, " interface="); j >= 0 {
				l = l[:j]
			}
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// measureLoad runs the generator in mode at rate (IPv4) and measures the
// daemon and the machine over a window after a short warm-up.
func (r *runner) measureLoad(s *stage, mode string, rate float64, extra ...string) loadSample {
	row := loadSample{SocketDrops: -1}
	warm, window := 500*time.Millisecond, r.o.LoadWindow
	veth0 := s.p.drops()
	gen, err := r.startGen(s, 4, mode, rate, warm+window+time.Minute, extra...)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	if err := r.sleep(warm); err != nil {
		row.Err = err.Error()
		stopGen(gen)
		return row
	}
	pid, drops0 := -1, int64(-1)
	if s.daemon != nil {
		pid = s.daemon.pid()
		if k, ok := s.socket(); ok {
			drops0 = k.Drops
		}
	}
	t0, cpu0 := monoNow(), procTicks(pid)
	sleepErr := r.sleep(window)
	t1, cpu1 := monoNow(), procTicks(pid)
	if s.daemon != nil {
		if k, ok := s.socket(); ok && drops0 >= 0 && k.Drops >= 0 {
			row.SocketDrops = k.Drops - drops0
		}
	}
	rep, gerr := stopGen(gen)
	row.Gen = rep
	row.VethDrops = s.p.drops() - veth0
	secs := float64(t1-t0) / 1e9
	row.Seconds = secs
	if pid > 0 && cpu0 >= 0 && cpu1 >= cpu0 {
		row.DaemonTicks = cpu1 - cpu0
		row.DaemonCPU = float64(row.DaemonTicks) / userHZ / secs * 100
	}
	if s.daemon != nil {
		select {
		case <-s.daemon.done:
			row.Err = fmt.Sprintf("%s exited during the run: %v", s.daemon.name, s.daemon.err)
		default:
		}
	}
	switch {
	case sleepErr != nil:
		row.Err = sleepErr.Error()
	case gerr != nil:
		row.Err = gerr.Error()
	}
	return row
}

// runSweep floods sesamed (the flood rows' shell door, with their real
// knockers) with spoofed first knocks at each sweep rate, to find where
// its capture starts to drop (issue 16, item 6). A rate of 0 is as fast
// as the generator can (-1 in the row).
func (r *runner) runSweep(res *results) error {
	for _, rate := range r.o.SweepRates {
		if rate == 0 {
			rate = -1
		}
		res.Sweep = append(res.Sweep, r.flood(sesameShell, modeFloodFirst, 4, rate))
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}
