package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// allOptions drive the all subcommand.
type allOptions struct {
	Quick         bool
	Samples       int
	NoiseSamples  int
	NoiseRate     float64 // 0: as fast as the generator can
	FloodRates    []float64
	FloodKnockers int
	FloodWarm     time.Duration
	FloodStagger  time.Duration
	Extras        bool          // wrong-stage, IPv6 and native-backend flood rows
	CaptureRates  []float64     // unrelated traffic for the capture rows (0: as fast as it can)
	SweepRates    []float64     // first-knock floods for the drop point (0: as fast as it can)
	LoadWindow    time.Duration // measured window of a capture or drop-point row
	Interval      time.Duration
	Out, JSON     string
	Repo, Go      string
	BenchTime     string
	Sesamed       string
	Work          string
	Keep          bool
	Command       string
	Only          map[string]bool // sections to run; empty: all
	// Latency, when set, is the knock-to-connect rows to run, on IPv4 and
	// (with Extras) IPv6 each; nil: every row, the iptables ones on IPv4 only.
	Latency []variant

	spaOptions // the SPA section's flags (spabench.go)
}

var sections = []string{"latency", "noise", "flood", "match", "capture", "drop-point", "spa", "fleet"}

func (o allOptions) runs(section string) bool { return len(o.Only) == 0 || o.Only[section] }

func allCmd(stdout, stderr io.Writer) *cobra.Command {
	var o allOptions
	var rates, only, captureRates, sweepRates, latency string
	c := &cobra.Command{
		Use:   "all",
		Short: "Run every benchmark, knockd and sesamed one after the other, and print the markdown report",
		Long: "all (as root) creates its own network namespaces, runs Debian's knockd and sesamed on identical " +
			"configs and traffic, one after the other, and prints BENCHMARKS.md's markdown (also written to --out). " +
			"Every namespace and process it starts is removed when it ends, on an error or on Ctrl-C; namespaces " +
			"left by a driver that was killed are removed by the next run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Quick {
				quick(cmd, &o, &rates, &captureRates, &sweepRates)
			}
			for _, l := range []struct {
				flag, list string
				zero       bool // 0 (as fast as it can) allowed
				dst        *[]float64
			}{{"--flood-rates", rates, false, &o.FloodRates}, {"--capture-rates", captureRates, true, &o.CaptureRates},
				{"--sweep-rates", sweepRates, true, &o.SweepRates}} {
				for _, f := range strings.Split(l.list, ",") {
					if f = strings.TrimSpace(f); f == "" {
						continue
					}
					v, err := strconv.ParseFloat(f, 64)
					if err != nil || v < 0 || (v == 0 && !l.zero) {
						return fmt.Errorf("%s: bad rate %q", l.flag, f)
					}
					*l.dst = append(*l.dst, v)
				}
			}
			for _, s := range strings.Split(only, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				if !slices.Contains(sections, s) {
					return fmt.Errorf("--only: unknown section %q (one of %s)", s, strings.Join(sections, ", "))
				}
				if o.Only == nil {
					o.Only = map[string]bool{}
				}
				o.Only[s] = true
			}
			var err error
			if o.Latency, err = parseVariants(latency); err != nil {
				return err
			}
			return runAll(cmd.Context(), o, stdout, stderr)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.Quick, "quick", false, "few samples, one flood rate, gentle noise, short matcher and SPA benchmarks (the CI smoke test)")
	f.IntVar(&o.Samples, "samples", 60, "knock-to-connect samples per configuration")
	f.IntVar(&o.NoiseSamples, "noise-samples", 30, "knock-to-connect samples per configuration under noise")
	f.Float64Var(&o.NoiseRate, "noise-rate", 0, "noise `RATE` in packets/s (0: as fast as the generator can)")
	f.StringVar(&rates, "flood-rates", "10000,50000,100000", "spoofed first-knock flood `RATES` (packets/s)")
	f.IntVar(&o.FloodKnockers, "flood-knockers", 100, "real knockers per flood")
	f.DurationVar(&o.FloodStagger, "flood-stagger", 110*time.Millisecond,
		"spacing of the real knockers' starts (sesamed runs at most 10 start commands per second per door, burst 20)")
	f.DurationVar(&o.FloodWarm, "flood-warm", time.Second, "flood time before the real knockers start")
	f.BoolVar(&o.Extras, "extras", true, "also flood with wrong-stage knocks and IPv6, and sesamed nftables, at the top rate")
	f.StringVar(&captureRates, "capture-rates", "100000,250000,0",
		"unrelated traffic `RATES` (packets/s, 0: as fast as the generator can) for the capture rows")
	f.StringVar(&sweepRates, "sweep-rates", "100000,200000,300000,0",
		"spoofed first-knock flood `RATES` (packets/s, 0: as fast as the generator can) for the drop point")
	f.DurationVar(&o.LoadWindow, "load-window", 5*time.Second, "measured window of each capture and drop-point row")
	f.DurationVar(&o.Interval, "interval", 100*time.Microsecond, "spacing of connection attempts while timing a knock")
	f.StringVar(&o.Out, "out", "", "write the markdown report to `FILE` too")
	f.StringVar(&o.JSON, "json", "", "write the raw results to `FILE`")
	f.StringVar(&o.Repo, "repo", ".", "the repository (for the matcher benchmark)")
	f.StringVar(&o.Go, "go", "go", "the go command (for the matcher benchmark)")
	f.StringVar(&o.BenchTime, "benchtime", "1s", "go test -benchtime for the matcher and the SPA cost benchmarks")
	f.StringVar(&o.Sesamed, "sesamed", "", "the sesamed binary (default: next to sesame-bench, else $PATH)")
	f.StringVar(&o.Work, "work", "", "keep configs and logs under `DIR` (default: a temporary directory, removed)")
	f.StringVar(&only, "only", "", "run only these `SECTIONS` (comma list of "+strings.Join(sections, ", ")+")")
	f.StringVar(&latency, "latency", "", "run only these knock-to-connect `ROWS`, on IPv4 and (with --extras) IPv6 each "+
		"(comma list of "+strings.Join(variantKeys(), ", ")+"); with --only latency, a run of just those rows")
	f.StringVar(&o.Command, "command", "sesame-bench all", "the command line to quote in the report")
	spaFlags(c, &o.spaOptions)
	return c
}

// quick lowers the defaults the user did not set.
func quick(cmd *cobra.Command, o *allOptions, rates, captureRates, sweepRates *string) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if !set("samples") {
		o.Samples = 10
	}
	if !set("noise-samples") {
		o.NoiseSamples = 5
	}
	if !set("noise-rate") {
		// CI runs other packages' tests alongside: do not take a core from them.
		o.NoiseRate = 20000
	}
	if !set("flood-rates") {
		*rates = "10000"
	}
	if !set("flood-knockers") {
		o.FloodKnockers = 20
	}
	if !set("flood-warm") {
		o.FloodWarm = 500 * time.Millisecond
	}
	if !set("extras") {
		o.Extras = false
	}
	if !set("benchtime") {
		o.BenchTime = "100ms"
	}
	if !set("capture-rates") {
		*captureRates = "20000"
	}
	if !set("sweep-rates") {
		*sweepRates = "20000"
	}
	if !set("load-window") {
		o.LoadWindow = time.Second
	}
	spaQuick(set, &o.spaOptions)
}

func runAll(ctx context.Context, o allOptions, stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("all needs root: it creates network namespaces and firewalls in them")
	}
	if o.Samples < 1 || o.FloodKnockers < 1 || o.FloodKnockers > 250 {
		return errors.New("--samples must be at least 1 and --flood-knockers 1-250")
	}
	if err := o.spaOptions.check(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.Sesamed == "" {
		o.Sesamed = filepath.Join(filepath.Dir(self), "sesamed")
		if _, err := os.Stat(o.Sesamed); err != nil {
			if o.Sesamed, err = exec.LookPath("sesamed"); err != nil {
				return errors.New("no sesamed next to sesame-bench or in $PATH (use --sesamed)")
			}
		}
	}
	for _, tool := range []string{"ip", "knockd", "iptables", "ip6tables", "iptables-nft", "iptables-legacy", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install iproute2 knockd iptables nftables", tool)
		}
	}
	if out, _ := exec.Command("iptables", "-V").Output(); !bytes.Contains(out, []byte("nf_tables")) {
		return fmt.Errorf("iptables is %q: the shell rows expect Debian's default iptables-nft", strings.TrimSpace(string(out)))
	}
	work := o.Work
	if work == "" {
		if work, err = os.MkdirTemp("", "sesame-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	sweep()
	l := &lab{}
	defer func() {
		if err := l.close(); err != nil {
			fmt.Fprintln(stderr, "sesame-bench: cleanup:", err)
		}
	}()
	r := &runner{ctx: ctx, lab: l, self: self, sesamed: o.Sesamed, work: work, log: stderr, o: o}
	res := &results{Machine: machine(o.Go), Command: o.Command, Quick: o.Quick, Started: time.Now(), Interval: o.Interval.String(),
		FloodWarm: o.FloodWarm, Stagger: o.FloodStagger, NoiseRate: o.NoiseRate, LoadWindow: o.LoadWindow}
	if err := r.runAll(res); err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted (its namespaces and daemons are removed)")
		}
		return err
	}
	res.Machine.LoadEnd = loadavg()
	res.Finished = time.Now()
	var md bytes.Buffer
	report(&md, res)
	if o.Out != "" {
		if err := os.WriteFile(o.Out, md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if o.JSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.JSON, b, 0o644); err != nil {
			return err
		}
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// runAll runs the scenarios in order; a scenario's own failure is
// recorded in its row, only Ctrl-C stops the run.
func (r *runner) runAll(res *results) error {
	// The matcher goes first, on a machine not yet busy writing the
	// floods' logs back to disk.
	if r.o.runs("match") {
		r.progress("matcher: go test -bench Observe")
		rows, line, err := runMatchBench(r.ctx, r.o.Go, r.o.Repo, r.o.BenchTime)
		res.Match, res.MatchCmd = rows, strings.Replace(line, r.o.Go+" ", "go ", 1)
		if err != nil {
			res.MatchErr = err.Error()
		}
	}
	if r.o.runs("capture") {
		r.progress("eBPF filter in the kernel: go test -bench EBPFFilter")
		rows, line, err := runFilterBench(r.ctx, r.o.Go, r.o.Repo)
		res.Filter, res.FilterCmd = rows, strings.Replace(line, r.o.Go+" ", "go ", 1)
		if err != nil {
			res.FilterErr = err.Error()
		}
	}
	// The SPA benchmarks build their own namespaces (the flood) or
	// none; before the scenarios too, for the cost benchmarks' sake.
	if r.o.runs("spa") {
		res.SPA = runSPA(r.ctx, r.o, r.progress)
	}
	if r.o.runs("fleet") {
		res.Fleet = runFleet(r.ctx, r.o, r.progress)
	}
	if r.o.runs("latency") {
		r.spawnCost(res)
		if err := r.runLatency(res); err != nil {
			return err
		}
		r.spawnCost(res)
	}
	if r.o.runs("noise") {
		if err := r.runNoise(res); err != nil {
			return err
		}
	}
	if r.o.runs("flood") {
		if err := r.runFlood(res); err != nil {
			return err
		}
	}
	if r.o.runs("capture") && len(r.o.CaptureRates) > 0 {
		if err := r.runCapture(res); err != nil {
			return err
		}
	}
	if r.o.runs("drop-point") && len(r.o.SweepRates) > 0 {
		if err := r.runSweep(res); err != nil {
			return err
		}
	}
	return r.ctx.Err()
}

// parseVariants reads --latency: a comma list of variant keys.
func parseVariants(s string) ([]variant, error) {
	var out []variant
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		i := slices.IndexFunc(latencyVariants, func(v variant) bool { return v.key() == k })
		if i < 0 {
			return nil, fmt.Errorf("--latency: unknown row %q (one of %s)", k, strings.Join(variantKeys(), ", "))
		}
		if !slices.Contains(out, latencyVariants[i]) {
			out = append(out, latencyVariants[i])
		}
	}
	return out, nil
}

func variantKeys() []string {
	var keys []string
	for _, v := range latencyVariants {
		keys = append(keys, v.key())
	}
	return keys
}

func (r *runner) runLatency(res *results) error {
	vs := r.o.Latency
	if vs == nil {
		vs = latencyVariants
	}
	for _, fam := range r.families() {
		for _, v := range vs {
			if fam == 6 && r.o.Latency == nil && (v == sesameIPTNFT || v == sesameIPTLeg) {
				continue // IPv6 rows: knockd against the shell and nftables only, unless asked
			}
			res.Latency = append(res.Latency, r.latency(v, fam, r.o.Samples, false))
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// spawnCost adds a series of `/bin/sh -c` spawns to res.Spawn (see
// spawnCost), taken while a knocker probes the protected port of a
// server where no daemon runs, as the knockers probe in a latency row
// while the daemon's start command starts: the spawn then competes for
// the CPUs with the same load. It runs before and after the latency rows.
func (r *runner) spawnCost(res *results) {
	if res.SpawnErr != "" || r.ctx.Err() != nil {
		return
	}
	n := max(r.o.Samples, 50)
	r.progress("spawn cost: /bin/sh -c while a knocker probes, %d samples", n)
	xs, cmds, err := r.spawnUnderProbe(n)
	res.Spawn = append(res.Spawn, xs...)
	res.CmdCost = append(res.CmdCost, cmds...)
	if err != nil {
		res.SpawnErr = err.Error()
		return
	}
	// The same without the probe, for reference.
	dir, err := os.MkdirTemp(r.work, "spawn-idle-")
	if err == nil {
		xs, err = spawnCost(dir, n, 5*time.Millisecond)
		res.SpawnIdle = append(res.SpawnIdle, xs...)
		os.RemoveAll(dir)
	}
	if err != nil {
		res.SpawnErr = err.Error()
	}
}

func (r *runner) runNoise(res *results) error {
	for _, v := range []variant{knockdShell, sesameShell, sesameNFTables} {
		res.Noise = append(res.Noise, r.latency(v, 4, r.o.NoiseSamples, true))
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) runFlood(res *results) error {
	type flood struct {
		mode string
		fam  int
		rate float64
	}
	floods := []flood{{modeFloodFirst, 4, 0}}
	for _, rate := range r.o.FloodRates {
		floods = append(floods, flood{modeFloodFirst, 4, rate})
	}
	top := r.o.FloodRates[len(r.o.FloodRates)-1]
	if r.o.Extras {
		floods = append(floods, flood{modeFloodWrong, 4, top}, flood{modeFloodFirst, 6, top})
	}
	// Repeat knocks and one-port opens: sesamed only. knockd runs the
	// door's command for every open, tens of thousands of shells a second
	// on a machine other runs share.
	floods = append(floods, flood{modeFloodReplay, 4, top}, flood{modeFloodOpen, 4, top})
	for _, f := range floods {
		vs := []variant{knockdShell, sesameShell}
		if f.mode == modeFloodReplay || f.mode == modeFloodOpen {
			vs = vs[1:]
		}
		if r.o.Extras && f.rate == top && f.mode != modeFloodWrong && f.fam == 4 {
			vs = append(vs, sesameNFTables)
		}
		for _, v := range vs {
			res.Flood = append(res.Flood, r.flood(v, f.mode, f.fam, f.rate))
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *runner) families() []int {
	if r.o.Extras {
		return []int{4, 6}
	}
	return []int{4}
}
