package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
)

// The SPA section: three go test benchmarks, run and parsed like the
// matcher's (matchbench.go). e2e's BenchmarkSPAFlood puts sesamed and
// Debian's fwknopd under the same garbage flood in namespaces of its
// own; internal/daemon's BenchmarkSPAPath is what one flood packet costs
// sesamed; core/sshknock's BenchmarkVerify what accepting an SSH-signed
// knock costs per key type.

// spaOptions are the --spa-* flags.
type spaOptions struct {
	// SPAPackets is how many real packets each flood case sends (its
	// go test -benchtime Nx).
	SPAPackets int
	// SPAFwknopd runs fwknopd's cases; each of its real packets under
	// the flood waits out its 5 s.
	SPAFwknopd bool
	// SPACount is go test -count for the cost benchmarks.
	SPACount int
}

func spaFlags(c *cobra.Command, o *spaOptions) {
	f := c.Flags()
	f.IntVar(&o.SPAPackets, "spa-packets", 20, "real SPA packets per flood case (go test -benchtime Nx of BenchmarkSPAFlood)")
	f.BoolVar(&o.SPAFwknopd, "spa-fwknopd", true, "run Debian's fwknopd under the same flood (each packet it does not admit waits 5 s)")
	f.IntVar(&o.SPACount, "spa-count", 3, "go test -count of the SPA cost benchmarks (SPAPath, Verify)")
}

func (o spaOptions) check() error {
	if o.SPAPackets < 1 || o.SPACount < 1 {
		return fmt.Errorf("--spa-packets and --spa-count must be at least 1")
	}
	return nil
}

// spaQuick lowers the defaults the user did not set. The quick run
// leaves out fwknopd (its lost packets cost 5 s each) and sesamed's
// 100k/s flood (a core CI's other tests need).
func spaQuick(set func(string) bool, o *spaOptions) {
	if !set("spa-packets") {
		o.SPAPackets = 3
	}
	if !set("spa-fwknopd") {
		o.SPAFwknopd = false
	}
	if !set("spa-count") {
		o.SPACount = 1
	}
}

// spaResults is the SPA section of a run.
type spaResults struct {
	Flood    []spaFloodRow `json:"flood"`
	FloodCmd string        `json:"flood_cmd"`
	FloodErr string        `json:"flood_error,omitempty"`
	// Left is the flood cases this run left out, and why.
	Left    string    `json:"left_out,omitempty"`
	Fwknopd string    `json:"fwknopd"` // its Debian package version
	Path    []costRow `json:"path"`
	PathCmd string    `json:"path_cmd"`
	PathErr string    `json:"path_error,omitempty"`
	Verify  []costRow `json:"verify"`
	VerCmd  string    `json:"verify_cmd"`
	VerErr  string    `json:"verify_error,omitempty"`
}

// spaFloodRow is one case of BenchmarkSPAFlood, over its runs.
type spaFloodRow struct {
	Name string `json:"name"`
	Runs int    `json:"runs"`
	Sent int    `json:"sent"` // real packets
	In   int    `json:"in"`   // of them, admitted within 5 s
	// The median over runs of each run's median and p99 time to open
	// (0 when none opened), flood rate and server CPU (% of one core);
	// the highest peak RSS.
	OpenP50MS float64 `json:"open_p50_ms"`
	OpenP99MS float64 `json:"open_p99_ms"`
	FloodPPS  float64 `json:"flood_pps"`
	CPUPct    float64 `json:"server_cpu_pct"`
	RSSMiB    float64 `json:"server_peak_rss_mib"`
}

// costRow is one case of a per-operation benchmark: the median of its
// runs, the fastest and slowest, the most it allocated in any run.
type costRow struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	MinNs       float64 `json:"min_ns_per_op"`
	MaxNs       float64 `json:"max_ns_per_op"`
	Runs        int     `json:"runs"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	CostUnits   float64 `json:"cost_units,omitempty"` // BenchmarkVerify's signature budget units
}

// The flood cases of BenchmarkSPAFlood the quick run keeps.
const spaQuickCases = "^(fwknop-quiet|fwknop-quiet-iptables|fwknop-garbage-20k|ssh-forged-20k)$"

// spaFloodArgs is the go test command line of the flood benchmark.
func spaFloodArgs(o spaOptions, quick bool) []string {
	bench := "SPAFlood"
	switch {
	case quick && !o.SPAFwknopd:
		bench += "/" + spaQuickCases
	case quick:
		bench += "/" + strings.Replace(spaQuickCases, ")$", "|fwknopd-quiet|fwknopd-garbage-20k)$", 1)
	case !o.SPAFwknopd:
		bench += "/^fwknop-" // every sesamed case: fwknopd's names start "fwknopd-"
		bench += "|^ssh-"
	}
	return []string{"test", "-run", "^$", "-bench", bench, "-benchtime", fmt.Sprintf("%dx", o.SPAPackets),
		"-count", "1", "-timeout", "60m", "./e2e/"}
}

// spaLeftOut says which flood cases spaFloodArgs leaves out, and why.
func spaLeftOut(o spaOptions, quick bool) string {
	var left []string
	if quick {
		left = append(left, "sesamed under 100k/s (a quick run leaves CI's other tests their core)")
	}
	if !o.SPAFwknopd {
		why := "--spa-fwknopd=false"
		if quick {
			why = "a quick run: each packet it does not admit waits 5 s"
		}
		left = append(left, "Debian's fwknopd ("+why+")")
	}
	return strings.Join(left, "; ")
}

func spaPathArgs(benchtime string, count int) []string {
	return []string{"test", "-run", "^$", "-bench", "SPAPath", "-benchmem", "-cpu", "1", "-count", fmt.Sprint(count),
		"-benchtime", benchtime, "./internal/daemon/"}
}

func spaVerifyArgs(benchtime string, count int) []string {
	return []string{"test", "-run", "^$", "-bench", "^BenchmarkVerify$", "-benchmem", "-cpu", "1", "-count", fmt.Sprint(count),
		"-benchtime", benchtime, "./core/sshknock/"}
}

// runSPA runs the three benchmarks in the repository at dir. A
// benchmark's failure is recorded in its part, beside whatever cases did
// run; only ctx's end stops it.
func runSPA(ctx context.Context, o allOptions, progress func(string, ...any)) *spaResults {
	s := &spaResults{Left: spaLeftOut(o.spaOptions, o.Quick), Fwknopd: dpkgVersion("fwknop-server")}
	run := func(name string, args []string, bench string) (*benchOutput, string, string) {
		progress("SPA: go test -bench %s", name)
		out, line, err := goBench(ctx, o.Go, o.Repo, args)
		bo, perr := parseGoBench(out, bench)
		msg := ""
		switch {
		case err != nil:
			msg = fmt.Sprintf("%s: %v", line, err)
			if bo != nil && len(bo.Failed) > 0 {
				msg += ": failed " + strings.Join(bo.Failed, ", ")
			}
			msg += "\n" + tail(out, 2000)
		case perr != nil:
			msg = perr.Error()
		}
		return bo, line, msg
	}
	bo, line, err := run("SPAFlood", spaFloodArgs(o.spaOptions, o.Quick), "BenchmarkSPAFlood")
	s.FloodCmd, s.FloodErr = line, err
	if bo != nil {
		s.Flood = bo.spaFlood()
	}
	if ctx.Err() != nil {
		return s
	}
	bo, line, err = run("SPAPath", spaPathArgs(o.BenchTime, o.SPACount), "BenchmarkSPAPath")
	s.PathCmd, s.PathErr = line, err
	if bo != nil {
		s.Path = bo.costs()
	}
	if ctx.Err() != nil {
		return s
	}
	bo, line, err = run("Verify", spaVerifyArgs(o.BenchTime, o.SPACount), "BenchmarkVerify")
	s.VerCmd, s.VerErr = line, err
	if bo != nil {
		s.Verify = bo.costs()
	}
	return s
}

// goBench runs go test with args in dir and returns its output and the
// command line to quote (as a shell would take it, go spelled "go").
func goBench(ctx context.Context, goBin, dir string, args []string) (out, line string, err error) {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err = cmd.Run()
	return b.String(), shellLine(append([]string{"go"}, args...)), err
}

// shellLine quotes the words of a command line that a shell would not
// take as they are.
func shellLine(words []string) string {
	var out []string
	for _, w := range words {
		if w == "" || strings.ContainsFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+", r))
		}) {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// dpkgVersion is an installed Debian package's version, or "".
func dpkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// floodCase returns the flood case named name, or nil.
func (s *spaResults) floodCase(name string) *spaFloodRow {
	if s == nil {
		return nil
	}
	for i := range s.Flood {
		if s.Flood[i].Name == name {
			return &s.Flood[i]
		}
	}
	return nil
}
