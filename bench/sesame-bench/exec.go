package main

import (
	"fmt"
	"io"
	"math"
)

// Detect to exec (issue 16): how long after the last knock a door's start
// command runs, next to what spawning `/bin/sh -c` costs the machine.

// targetExecOverMS is how much later than a bare `/bin/sh -c` spawn the
// start command may run after the last knock, at the median and at p99.
const targetExecOverMS = 1.0

// execTimes sets each sample's ExecMS from the exec stamp its source's
// start command wrote after its last knock.
func execTimes(ss []sample, stamps []line) {
	for i := range ss {
		s := &ss[i]
		for _, l := range stamps {
			if l.at >= s.KnockNS && l.text == s.Src {
				s.ExecMS = float64(l.at-s.KnockNS) / 1e6
				break
			}
		}
	}
}

// execs are a row's knock-to-exec times.
func (row *latencyRow) execs() []float64 {
	var out []float64
	for _, s := range row.Samples {
		if s.ExecMS > 0 {
			out = append(out, s.ExecMS)
		}
	}
	return out
}

// execVerdict: sesamed's last knock to start command running, within
// targetExecOverMS of the spawn cost, at the median and at p99.
func (r *results) execVerdict() verdict {
	vd := verdict{Target: "last knock to start command running (sesamed, shell) minus the machine's `/bin/sh -c` spawn, median and p99",
		Required: fmt.Sprintf("≤ %.0f ms each", targetExecOverMS)}
	row := r.latencyRow(sesameShell, 4)
	if row == nil || len(r.Spawn) == 0 {
		return vd
	}
	xs := row.execs()
	if len(xs) == 0 {
		return vd
	}
	em, ep := median(xs), quantile(xs, 0.99)
	sm, sp := median(r.Spawn), r.spawnP99(len(xs))
	dm, dp := em-sm, ep-sp
	vd.Known, vd.Met = true, dm <= targetExecOverMS && dp <= targetExecOverMS
	vd.Measured = fmt.Sprintf("median %+.2f ms (%.2f vs %.2f), p99 %+.2f ms (%.2f vs %.2f, the spawn's over runs of %d)", dm, em, sm, dp, ep, sp, len(xs))
	if !vd.Met {
		vd.Miss = fmt.Sprintf("%.2f ms over", math.Max(dm, dp)-targetExecOverMS)
	}
	return vd
}

// spawnP99 is the spawn's p99 over as many samples as a row of n: the
// mean nearest-rank p99 of its consecutive runs of n samples (the pooled
// p99 when there are fewer than n). A row's p99 must be compared at its
// own sample count: the nearest-rank p99 of 60 samples is their maximum,
// of 120 their second largest, and the maximum of 60 draws exceeds the
// second largest of 120 from the same distribution 56% of the time
// (1 - 120/180 · 119/179).
func (r *results) spawnP99(n int) float64 {
	if n <= 0 || len(r.Spawn) < n {
		return quantile(r.Spawn, 0.99)
	}
	var sum float64
	k := len(r.Spawn) / n
	for i := range k {
		sum += quantile(r.Spawn[i*n:(i+1)*n], 0.99)
	}
	return sum / float64(k)
}

// execReport is the detect-to-exec table: the spawn cost, then each
// shell row's knock to detect and knock to exec.
func execReport(w io.Writer, r *results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	var rows []latencyRow
	for _, row := range r.Latency {
		if row.Err == "" && len(row.execs()) > 0 {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 && len(r.Spawn) == 0 && r.SpawnErr == "" {
		return
	}
	p("\n## Last knock to start command running\n\n")
	p("The shell rows' start command begins with `echo %%IP%% > FIFO` (a shell builtin), and the driver timestamps each " +
		"line as it arrives on the FIFO: *Exec* is the last knock to that line, so the start command's first instruction. " +
		"The first row is the machine's own cost of that: the driver (a Go process) spawning `/bin/sh -c 'echo … > FIFO'`, " +
		"from just before the fork to the line, while a knocker probes a server without a daemon every probe interval (the load " +
		"the knockers put on the machine while a daemon's start command starts), before and after the latency rows; the reference " +
		"row is the same spawn with no probe running. *Over spawn* is a row's " +
		"exec minus the spawn's, at the median and at p99; the p99 it subtracts is the spawn's over as many samples as the row " +
		"(the mean of its consecutive runs of that many): a nearest-rank p99 is the maximum of 60 samples but the second largest " +
		"of 120, and comparing those two fails a row with the spawn's own distribution 56%% of the time.\n\n")
	p("| What | IP | Samples | Detect median ms | Exec median ms | Exec p99 ms | Over spawn, median / p99 ms |\n")
	p("|---|---|---:|---:|---:|---:|---:|\n")
	sm, sp := median(r.Spawn), quantile(r.Spawn, 0.99)
	if r.SpawnErr != "" {
		p("| `/bin/sh -c` spawn | — | error: %s |||||\n", oneLine(r.SpawnErr))
	} else {
		p("| `/bin/sh -c` spawn | — | %d | — | %s | %s | — |\n", len(r.Spawn), ms(sm), ms(sp))
	}
	if len(r.SpawnIdle) > 0 {
		p("| `/bin/sh -c` spawn without the probe (reference) | — | %d | — | %s | %s | %+.2f / %+.2f |\n", len(r.SpawnIdle),
			ms(median(r.SpawnIdle)), ms(quantile(r.SpawnIdle, 0.99)), median(r.SpawnIdle)-sm, quantile(r.SpawnIdle, 0.99)-sp)
	}
	for _, row := range rows {
		xs := row.execs()
		det, _ := detects(row)
		em, ep := median(xs), quantile(xs, 0.99)
		over := "—"
		if len(r.Spawn) > 0 {
			over = fmt.Sprintf("%+.2f / %+.2f", em-sm, ep-r.spawnP99(len(xs)))
		}
		p("| %s | IPv%d | %d | %s | %s | %s | %s |\n", row.Variant, row.Family, len(xs), ms(median(det)), ms(em), ms(ep), over)
	}
}
