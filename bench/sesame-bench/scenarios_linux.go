package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runner runs the scenarios. It is used by one goroutine.
type runner struct {
	ctx     context.Context
	lab     *lab
	self    string // this binary, run inside the namespaces
	sesamed string
	work    string
	log     io.Writer
	o       allOptions
	n       int
}

// stage is one scenario's namespaces and processes.
type stage struct {
	p        *pair
	dir      string
	daemon   *proc
	listener *proc
	// exec stamps the shell rows' start commands (latency rows only).
	exec *stamps
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// setup builds fresh namespaces for v with a DROP-policy firewall, the
// listener on the protected port and the daemon, and waits until the
// daemon captures. A watched daemon's output lines are timestamped (and
// knockd runs with -v so that it prints them).
func (r *runner) setup(v variant, knockers []netip.Addr, watch, floodDoors bool) (*stage, error) {
	r.n++
	dir := filepath.Join(r.work, fmt.Sprintf("%02d-%s-%s", r.n, v.Daemon, v.Action))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p, err := r.lab.newPair(knockers)
	if err != nil {
		return nil, err
	}
	s := &stage{p: p, dir: dir}
	cmds, nft := v.lockdown()
	for _, c := range cmds {
		if _, err := p.srv.Run(c...); err != nil {
			return s, err
		}
	}
	if nft != "" {
		c := p.srv.Command("nft", "-f", "-")
		c.Stdin = strings.NewReader(nft)
		if out, err := c.CombinedOutput(); err != nil {
			return s, fmt.Errorf("nft -f: %v: %s", err, out)
		}
	}
	fifo := ""
	if watch && v.Action == actShell {
		if s.exec, err = openStamps(dir); err != nil {
			return s, err
		}
		fifo = s.exec.path
	}
	if err := os.WriteFile(filepath.Join(dir, "knockd.conf"), []byte(v.config(dir, floodDoors, fifo)), 0o644); err != nil {
		return s, err
	}
	if s.listener, err = r.lab.start(p.srv, "listen", []string{r.self, "listen", "--port", fmt.Sprint(protectedPort)}, false, ""); err != nil {
		return s, err
	}
	if err := s.listener.waitFor(10*time.Second, "listening", func() bool { return strings.Contains(s.listener.output(), "listening") }); err != nil {
		return s, err
	}
	logPath := ""
	if !watch {
		logPath = filepath.Join(dir, "daemon.out")
	}
	if s.daemon, err = r.lab.start(p.srv, v.Daemon, v.argv(r.sesamed, dir, watch), watch, logPath); err != nil {
		return s, err
	}
	ready := func() bool {
		if watch {
			return strings.Contains(s.daemon.output(), "listening on")
		}
		return strings.Contains(readFileString(logPath), "listening on") ||
			strings.Contains(readFileString(filepath.Join(dir, "knock.log")), "listening on")
	}
	return s, s.daemon.waitFor(10*time.Second, "listening on", ready)
}

// socket returns the daemon's capture socket as ss shows it.
func (s *stage) socket() (pktSock, bool) {
	out, err := s.p.srv.Run("ss", "-0", "-e", "-m", "-p", "-n")
	if err != nil {
		return pktSock{}, false
	}
	for _, k := range parseSS(out) {
		if k.PID == s.daemon.pid() {
			return k, true
		}
	}
	return pktSock{}, false
}

func (r *runner) teardown(s *stage) {
	if s == nil || s.p == nil {
		return
	}
	if s.daemon != nil && r.o.Work != "" {
		if out := s.daemon.output(); out != "" {
			_ = os.WriteFile(filepath.Join(s.dir, "daemon.out"), []byte(out), 0o644)
		}
	}
	if err := r.lab.release(s.p, s.daemon, s.listener); err != nil {
		r.progress("cleanup: %v", err)
	}
	s.exec.close()
	if r.o.Work == "" {
		// A flood's logs run to hundreds of megabytes; nobody asked to keep them.
		_ = os.RemoveAll(s.dir)
	}
}

// span returns n consecutive addresses from first.
func span(first netip.Addr, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = first
		first = first.Next()
	}
	return out
}

func serverAddr(fam int) netip.Addr {
	if fam == 6 {
		return serverAddr6
	}
	return serverAddr4
}

// knockerAddrs are the real knockers of a scenario: latency rows use
// 10.77.1.x (fd77::1:x), flood rows 10.77.2.x (fd77::2:x).
func knockerAddrs(fam, block, n int) []netip.Addr {
	first := netip.MustParseAddr(fmt.Sprintf("10.77.%d.1", block))
	if fam == 6 {
		first = netip.MustParseAddr(fmt.Sprintf("fd77::%d:1", block))
	}
	return span(first, n)
}

// runKnockersIn runs the knockers subcommand in the client namespace.
func (r *runner) runKnockersIn(s *stage, fam int, srcs []netip.Addr, extra ...string) ([]sample, error) {
	args := append([]string{r.self, "knockers", "-i", clientIf, "--dst-mac", s.p.srvMAC.String(),
		"--dst", serverAddr(fam).String(), "--port", fmt.Sprint(protectedPort), "--sequence", doorSequence,
		"--sources", fmt.Sprintf("%s+%d", srcs[0], len(srcs))}, extra...)
	cmd := s.p.cli.Command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(r.ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("knockers: %w: %s", err, tail(errb.String(), 2000))
	}
	var ss []sample
	if err := json.Unmarshal(out.Bytes(), &ss); err != nil {
		return nil, fmt.Errorf("knockers output: %w", err)
	}
	return ss, nil
}

// detectTimes sets each successful sample's DetectMS from the daemon's
// "SRC: bench: OPEN SESAME" line read after its last knock.
func detectTimes(ss []sample, lines []line) {
	for i := range ss {
		s := &ss[i]
		if !s.OK {
			continue
		}
		needle := s.Src + ": bench: OPEN SESAME"
		for _, l := range lines {
			if l.at >= s.KnockNS && strings.Contains(l.text, needle) {
				s.DetectMS = float64(l.at-s.KnockNS) / 1e6
				break
			}
		}
	}
}

// startGen starts the generator in the client namespace; its report
// comes when it stops (count, duration, or SIGINT from stopGen).
func (r *runner) startGen(s *stage, fam int, mode string, rate float64, dur time.Duration, extra ...string) (*proc, error) {
	spoof := spoof4
	if fam == 6 {
		spoof = spoof6
	}
	return r.lab.start(s.p.cli, "gen", append([]string{r.self, "gen", "-i", clientIf, "--dst-mac", s.p.srvMAC.String(),
		"--dst", serverAddr(fam).String(), "--sequence", floodSequence(mode), "--mode", mode, "--spoof", spoof.String(),
		"--avoid", fmt.Sprint(protectedPort), "--rate", fmt.Sprint(rate), "--duration", dur.String()}, extra...), false, "")
}

func stopGen(g *proc) (*genReport, error) {
	g.signal(syscall.SIGINT)
	var rep genReport
	out := g.output()
	i := strings.Index(out, "{")
	if i < 0 {
		return nil, fmt.Errorf("generator printed no report (%v): %s", g.err, tail(out, 2000))
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep); err != nil {
		return nil, fmt.Errorf("generator report: %w: %s", err, tail(out, 2000))
	}
	return &rep, nil
}

func (r *runner) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-t.C:
		return nil
	}
}

// latency measures knock-to-connect for v: sequential knockers from
// distinct addresses (each a fresh grant), with random pauses between
// them so that samples fall at every phase of knockd's capture timeout.
// With noise, the generator sends to non-knock ports as fast as it can
// meanwhile.
func (r *runner) latency(v variant, fam, n int, noise bool) latencyRow {
	row := latencyRow{Variant: v, Family: fam}
	what := "latency"
	if noise {
		what = "latency under noise"
	}
	r.progress("%s: %s, IPv%d, %d samples", what, v, fam, n)
	srcs := knockerAddrs(fam, 1, n)
	s, err := r.setup(v, srcs, true, false)
	defer r.teardown(s)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	if k, ok := s.socket(); ok {
		row.Capture = k.describe()
	}
	var gen *proc
	if noise {
		if gen, err = r.startGen(s, fam, modeNoise, r.o.NoiseRate, 10*time.Minute); err != nil {
			row.Err = err.Error()
			return row
		}
		if err := r.sleep(500 * time.Millisecond); err != nil {
			row.Err = err.Error()
			return row
		}
	}
	// At least 100 ms between samples: sesamed grants at most 10 per second
	// per door (burst 20), native grants included, and ignores the rest.
	// The random part spans two periods of knockd's 50 ms capture timeout,
	// so samples land at every phase of it.
	row.Samples, err = r.runKnockersIn(s, fam, srcs, "--interval", r.o.Interval.String(),
		"--life", "50ms", "--timeout", "3s", "--gap", "100ms", "--gap-jitter", "100ms")
	if gen != nil {
		rep, gerr := stopGen(gen)
		row.Noise = rep
		if err == nil {
			err = gerr
		}
	}
	if err != nil {
		row.Err = err.Error()
		return row
	}
	detectTimes(row.Samples, s.daemon.snapshot())
	if s.exec != nil {
		execTimes(row.Samples, s.exec.snapshot())
	}
	return row
}

// flood runs the real knockers while a spoofed flood of mode runs at
// rate (no flood when rate is 0, as fast as the generator can when it is
// negative), and measures the daemon's CPU and peak memory over the
// flood.
func (r *runner) flood(v variant, mode string, fam int, rate float64) floodRow {
	row := floodRow{Variant: v, Mode: mode, Family: fam, Rate: rate, SocketDrops: -1}
	what := fmt.Sprintf("%.0f packets/s", rate)
	if rate < 0 {
		what = "the generator's top rate"
	}
	r.progress("flood: %s, %s IPv%d at %s, %d knockers", v, mode, fam, what, r.o.FloodKnockers)
	srcs := knockerAddrs(fam, 2, r.o.FloodKnockers)
	s, err := r.setup(v, srcs, false, mode == modeFloodReplay || mode == modeFloodOpen)
	defer r.teardown(s)
	fail := func(err error) floodRow {
		row.Err = err.Error()
		return row
	}
	if err != nil {
		return fail(err)
	}
	drop0 := s.p.drops()
	pid := s.daemon.pid()
	t0, cpu0 := monoNow(), procTicks(pid)
	var gen *proc
	if rate != 0 {
		if gen, err = r.startGen(s, fam, mode, max(rate, 0), 2*time.Minute); err != nil {
			return fail(err)
		}
		// Let the flood fill the daemon's state before the real knockers come.
		if err := r.sleep(r.o.FloodWarm); err != nil {
			return fail(err)
		}
	}
	row.Knockers, err = r.runKnockersIn(s, fam, srcs, "--concurrency", fmt.Sprint(len(srcs)),
		"--stagger", r.o.FloodStagger.String(), "--interval", "5ms", "--life", "200ms", "--timeout", "5s", "--gap", "0s")
	t1, cpu1 := monoNow(), procTicks(pid)
	row.HWMKiB = procHWM(pid)
	if k, ok := s.socket(); ok {
		row.Capture = k.describe()
		if !k.Ring {
			row.SocketDrops = k.Drops
		}
	}
	if gen != nil {
		rep, gerr := stopGen(gen)
		row.Gen = rep
		if err == nil {
			err = gerr
		}
	}
	row.RxDropped = s.p.drops() - drop0
	// Which knockers the daemon opened for: a knocker it never saw was
	// lost before it (the row's drops say where), one it opened for that
	// did not get in is the daemon's.
	out := readFileString(filepath.Join(s.dir, "daemon.out"))
	for i := range row.Knockers {
		k := &row.Knockers[i]
		k.Opened = strings.Contains(out, k.Src+": bench: OPEN SESAME")
	}
	row.StderrLines = countLines(filepath.Join(s.dir, "daemon.out"))
	row.LogFileLines = countLines(filepath.Join(s.dir, "knock.log"))
	row.LogLines = row.StderrLines + row.LogFileLines
	row.FloodSeconds = float64(t1-t0) / 1e9
	if cpu0 >= 0 && cpu1 >= cpu0 {
		row.CPUPct = float64(cpu1-cpu0) / userHZ / (float64(t1-t0) / 1e9) * 100
	}
	if err != nil {
		return fail(err)
	}
	return row
}

// countLines counts the lines of a file (0 when unreadable).
func countLines(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err != nil {
			return n
		}
	}
}

// procTicks is the process's user+sys time in clock ticks, -1 if unknown.
func procTicks(pid int) int64 {
	v, err := parseStatTicks(readFileString(fmt.Sprintf("/proc/%d/stat", pid)))
	if err != nil {
		return -1
	}
	return int64(v)
}

func procHWM(pid int) uint64 {
	v, _ := parseStatusKiB(readFileString(fmt.Sprintf("/proc/%d/status", pid)), "VmHWM")
	return v
}
