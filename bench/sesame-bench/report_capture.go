package main

import (
	"fmt"
	"io"
	"math"
)

// The capture and drop-point sections of the report (issue 16, items 4
// and 6).

// captureTopRate is the highest rate the generator reached in the
// capture rows.
func (r *results) captureTopRate() float64 {
	top := 0.0
	for _, c := range r.Capture {
		if c.Gen != nil {
			top = math.Max(top, c.Gen.PPS)
		}
	}
	return top
}

// config says which config a capture row ran.
func (c captureRow) config() string {
	if c.Addrs > 0 {
		return fmt.Sprintf("%d ports, %d more addresses", c.Ports, c.Addrs)
	}
	return fmt.Sprintf("%d ports, the server's 2 addresses", c.Ports)
}

// perPacket is a capture row's daemon CPU per packet: percent of a core
// per 100k packets/s and nanoseconds per packet. ok is false without a
// rate to divide by.
func (c captureRow) perPacket() (per100k, ns float64, ok bool) {
	if c.Gen == nil || c.Gen.PPS <= 0 || c.Seconds <= 0 {
		return 0, 0, false
	}
	return c.DaemonCPU / (c.Gen.PPS / 1e5), c.DaemonCPU / 100 * 1e9 / c.Gen.PPS, true
}

// captureRef is sesamed's eBPF row for the same config and rate.
func (r *results) captureRef(c captureRow) *captureRow {
	for i := range r.Capture {
		x := &r.Capture[i]
		if x.Variant == captureEBPF && x.Ports == c.Ports && x.Addrs == c.Addrs && x.Rate == c.Rate && x.Err == "" && x.Gen != nil {
			return x
		}
	}
	return nil
}

// vsEBPF is c's daemon CPU per packet over sesamed eBPF's in the same
// config at the same rate. A row whose CPU stayed under one clock tick
// counts as one tick, and the ratio is then a lower bound ("≥").
func (r *results) vsEBPF(c captureRow) string {
	ref := r.captureRef(c)
	if ref == nil || c.Variant == captureEBPF || c.Gen == nil || c.Gen.PPS <= 0 || c.DaemonTicks == 0 {
		return "—"
	}
	refTicks, bound := float64(ref.DaemonTicks), ""
	if refTicks < 1 {
		refTicks, bound = 1, "≥ "
	}
	refPer := refTicks / ref.Seconds / ref.Gen.PPS
	per := float64(c.DaemonTicks) / c.Seconds / c.Gen.PPS
	return fmt.Sprintf("%s%.0f×", bound, per/refPer)
}

func rateLabel(rate float64) string {
	switch {
	case rate == 0:
		return "max"
	case rate < 0:
		return "max"
	}
	return fmt.Sprintf("%.0f", rate)
}

func captureReport(w io.Writer, r *results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	if len(r.Capture) == 0 && len(r.Filter) == 0 && r.FilterErr == "" {
		return
	}
	p("\n## Capture: traffic that is not a knock\n\n")
	p("Two configs of %d-port doors (a third of the ports UDP): 10,000 knock ports on a server with %d IPv4 and %d IPv6 "+
		"addresses besides its own, and 1,000 knock ports on its own two, about the most knockd can compile a filter for "+
		"(libpcap's compiler runs out of memory past that). The generator sends TCP SYNs and UDP datagrams from spoofed "+
		"sources to every port no door uses, at each rate for %s after a 0.5 s warm-up. *sesamed, eBPF filter* "+
		"is sesamed as it runs; *without CAP_BPF* is the same binary under `setpriv --bounding-set=-bpf,-sys_admin,-perfmon`, "+
		"as under a unit that lacks them, so it falls back to its classic BPF filter; knockd reads the same "+
		"knockd.conf. The filter column is what sesamed logged. Daemon CPU is its user+sys time over the window "+
		"(/proc/PID/stat, clock ticks of 10 ms), its idle work (timers, heartbeats) included; the kernel's own work "+
		"on each packet, the filter included, runs in softirq context and is not in it (see the next table). "+
		"*÷ sesamed eBPF* is CPU per packet against sesamed's eBPF row at the same rate (a row under one clock tick "+
		"counts as one: then a lower bound). *At 1 Mpps* projects the CPU per packet to a million packets per "+
		"second; the generator reached %.0f packets/s at most here, on its one core. *Socket drops* come from `ss`, "+
		"which cannot list a packet socket whose classic filter does not fit a netlink message (a couple of "+
		"thousand instructions): those show —.\n\n", capturePortsPerDoor, captureAddrs, captureAddrs, r.LoadWindow, r.captureTopRate())
	p("| Knock ports, addresses | Daemon, kernel filter | Target pps | Achieved pps | Daemon CPU | CPU per 100k pps | ns per packet | ÷ sesamed eBPF | At 1 Mpps (projected) | Socket drops |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Capture {
		if c.Err != "" {
			p("| %s | %s | %s | | error: %s | | | | | |\n", c.config(), c.Variant.Name, rateLabel(c.Rate), oneLine(c.Err))
			continue
		}
		achieved, per100k, ns, at1M := "—", "—", "—", "—"
		if c.Gen != nil {
			achieved = fmt.Sprintf("%.0f", c.Gen.PPS)
		}
		if a, b, ok := c.perPacket(); ok {
			per100k, ns, at1M = fmt.Sprintf("%.2f%%", a), fmt.Sprintf("%.0f", b), fmt.Sprintf("%.0f%% of a core", a*10)
		}
		drops := "—"
		if c.SocketDrops >= 0 {
			drops = fmt.Sprint(c.SocketDrops)
		}
		p("| %s | %s | %s | %s | %.1f%% | %s | %s | %s | %s | %s |\n", c.config(), c.Variant.Name, rateLabel(c.Rate), achieved,
			c.DaemonCPU, per100k, ns, r.vsEBPF(c), at1M, drops)
	}
	var said []string
	seen := map[string]bool{}
	for _, c := range r.Capture {
		k := c.config() + ", " + c.Variant.Name
		if c.Filter != "" && !seen[k] {
			seen[k] = true
			said = append(said, fmt.Sprintf("- %s: `%s`\n", k, c.Filter))
		}
	}
	if len(said) > 0 {
		p("\nWhat sesamed logged about its filter:\n\n")
		for _, l := range said {
			p("%s", l)
		}
	}

	p("\n### The eBPF filter's own cost\n\n")
	if r.FilterErr != "" {
		p("Not measured: %s\n", oneLine(r.FilterErr))
		return
	}
	p("From `%s`: the kernel runs the filter on one frame that it drops, a million times, and times the runs "+
		"alone (BPF_PROG_TEST_RUN). This is the cost every frame on the interface pays in softirq context while "+
		"sesamed captures, whatever its config: three hash lookups at most.\n\n", r.FilterCmd)
	p("| Config / frame | ns per frame (median) | fastest – slowest | CPU at 1 Mpps |\n|---|---:|---:|---:|\n")
	for _, f := range r.Filter {
		p("| %s | %.0f | %.0f – %.0f | %.1f%% of a core |\n", f.Name, f.NsPerFrame, f.MinNs, f.MaxNs, f.NsPerFrame/10)
	}
}

func sweepReport(w io.Writer, r *results) {
	if len(r.Sweep) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## Drop point under a spoofed first-knock flood\n\n")
	p("sesamed (the flood rows' shell door, eBPF filter) with the flood rows' %d real knockers while the generator "+
		"sends first knocks from a new spoofed source each, at rising rates (*max*: as fast as the generator can on its "+
		"core). The capture drops when its socket's buffer overflows (*Socket drops*), or a knocker does not get in. "+
		"sesamed reads up to 64 frames per recvmmsg(2) and hands each to the matcher's goroutine.\n\n", len(r.Sweep[0].Knockers))
	p("| Target pps | Achieved pps | Knockers in | Median / p99 ms | sesamed CPU | CPU per 100k pps | Socket drops | veth drops |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, f := range r.Sweep {
		achieved := "—"
		if f.Gen != nil {
			achieved = fmt.Sprintf("%.0f", f.Gen.PPS)
		}
		if f.Err != "" {
			p("| %s | %s | error: %s | | | | | |\n", rateLabel(f.Rate), achieved, oneLine(f.Err))
			continue
		}
		xs, ok := latencies(f.Knockers)
		per := "—"
		if f.Gen != nil && f.Gen.PPS > 0 {
			per = fmt.Sprintf("%.1f%%", f.CPUPct/(f.Gen.PPS/1e5))
		}
		drops := "—"
		if f.SocketDrops >= 0 {
			drops = fmt.Sprint(f.SocketDrops)
		}
		p("| %s | %s | %d / %d | %s / %s | %.1f%% | %s | %s | %d |\n", rateLabel(f.Rate), achieved, ok, len(f.Knockers),
			ms(median(xs)), ms(quantile(xs, 0.99)), f.CPUPct, per, drops, f.RxDropped)
	}
	if lossless, first := r.dropPoint(); first != nil {
		p("\nFirst loss at %.0f packets/s (achieved)", first.Gen.PPS)
		if lossless > 0 {
			p("; none up to %.0f packets/s", lossless)
		}
		p(".\n")
	} else if lossless > 0 {
		p("\nNo loss up to %.0f packets/s, the highest rate reached: the drop point lies beyond what the generator "+
			"sends from one core here.\n", lossless)
	}
}

// dropPoint returns the highest achieved rate of the sweep with no loss
// (no socket drops, every knocker in) below the first rate with loss,
// and that first lossy row (nil when none lost anything).
func (r *results) dropPoint() (lossless float64, first *floodRow) {
	for i := range r.Sweep {
		f := &r.Sweep[i]
		if f.Err != "" || f.Gen == nil {
			continue
		}
		ok, total := f.in()
		if f.SocketDrops > 0 || ok < total {
			if first == nil || f.Gen.PPS < first.Gen.PPS {
				first = f
			}
			continue
		}
		lossless = math.Max(lossless, f.Gen.PPS)
	}
	if first != nil && lossless > first.Gen.PPS {
		// A lossless row above a lossy one: report the lower bound only.
		lossless = 0
		for i := range r.Sweep {
			f := &r.Sweep[i]
			if f.Err == "" && f.Gen != nil && f.Gen.PPS < first.Gen.PPS && f.SocketDrops <= 0 {
				if ok, total := f.in(); ok == total {
					lossless = math.Max(lossless, f.Gen.PPS)
				}
			}
		}
	}
	return lossless, first
}
