package main

import (
	"fmt"

	"strings"
)

// notes explains the run: how it was measured and, from the numbers of
// this run, why a target was met or missed.
func notes(r *results) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	add("**Setup.** Every row runs in fresh network namespaces: a server (%s and %s on veth `%s`) and a client "+
		"(%s, %s, plus one address per knocker), with permanent neighbour entries so no knocker waits for ARP. The "+
		"server drops new connections: `iptables -P INPUT DROP` (iptables-nft) for knockd and for sesamed's shell "+
		"and iptables-nft rows, the same with iptables-legacy for that row, and an nft `policy drop` table that "+
		"accepts only port %d, whose drop Sesame's own table then enforces, for the nftables row. Both daemons read "+
		"the same knockd.conf: one door `%s`, `tcpflags = syn`, `seq_timeout = 5`, a `LogFile`, and "+
		"`start_command = /usr/sbin/iptables -I INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT` (in the knock-to-connect rows "+
		"preceded by `echo %%IP%% > FIFO; `, the exec stamp); the native rows "+
		"replace the command with `Open = %d/tcp`. Knocks are SYN frames written with AF_PACKET, back to back, as "+
		"the knock client sends them; sesamed keeps its journal on disk under the run's work directory.",
		serverAddr4, serverAddr6, serverIf, clientAddr4, clientAddr6, protectedPort, doorSequence, protectedPort, protectedPort)

	if k := r.latencyRow(knockdShell, 4); k != nil {
		det, _ := detects(*k)
		line := fmt.Sprintf("**Why knockd is slower.** knockd opens its capture with `pcap_open_live(iface, 65535, 0, 50, ...)` "+
			"(knockd.c): a 50 ms buffer timeout. libpcap on Linux turns that into the timeout of a TPACKET_V3 ring "+
			"(`ss -0 -e` on knockd's socket in this run: %s), so the kernel hands a knock to knockd only when the "+
			"ring block is retired, up to 50 ms after it arrived.", orUnknown(k.Capture))
		if len(det) > 0 {
			line += fmt.Sprintf(" knockd's detection (last knock to its OPEN SESAME line) took %s ms median, %s ms at most, "+
				"over %d samples", ms(median(det)), ms(quantile(det, 1)), len(det))
			if s := r.latencyRow(sesameShell, 4); s != nil {
				sd, _ := detects(*s)
				line += fmt.Sprintf("; sesamed's (%s) took %s ms median", orUnknown(s.Capture), ms(median(sd)))
			}
			line += ". The time after detection (the Grant column) is the same `iptables -I` for both."
			if max := quantile(det, 1); max > 60 {
				line += fmt.Sprintf(" Some detections took longer than 50 ms (%s ms): the machine was busy.", ms(max))
			}
		}
		add("%s", line)
	}

	shell, nft := r.latencyRow(sesameShell, 4), r.latencyRow(sesameNFTables, 4)
	if shell != nil && nft != nil {
		_, gs := detects(*shell)
		_, gn := detects(*nft)
		cmd := ""
		if len(r.CmdCost) > 0 {
			cmd = fmt.Sprintf(" (the command alone, `iptables -I` exec'd by the driver in a server namespace under the same probe, "+
				"takes %s ms median, p99 %s, over %d runs)", ms(median(r.CmdCost)), ms(quantile(r.CmdCost, 0.99)), len(r.CmdCost))
		}
		add("**Sesame's grant paths.** After detection, the shell row spends %s ms median running `/bin/sh -c iptables -I ...`%s; "+
			"the nftables row %s ms updating `table inet sesame` over netlink while the grant's journal record is written "+
			"(fdatasync): the kernel ends the element at the deadline, so the write need not come first (core/grant's doc). "+
			"The iptables-nft row appends the new source's rule over netlink too, written as iptables-nft writes it "+
			"(core/firewall), with no iptables process.",
			ms(median(gs)), cmd, ms(median(gn)))
		for _, v := range []variant{sesameIPTNFT, sesameIPTLeg} {
			row := r.latencyRow(v, 4)
			if row == nil {
				continue
			}
			_, g := detects(*row)
			if median(g) > median(gs) {
				add("**Native %s is slower than the shell command** (grant %s ms against %s ms), although "+
					"core/firewall's iptables Grant for a new source is one netlink transaction with iptables-nft and one "+
					"`iptables -A SESAME` with iptables-legacy (after one netlink read of the nf_tables generation for "+
					"iptables-nft), where the shell row runs /bin/sh and then iptables.",
					v.Action, ms(median(g)), ms(median(gs)))
			}
		}
	}

	for _, v := range r.verdicts() {
		if v.Known && !v.Met {
			if n := missNote(r, v); n != "" {
				add("%s", n)
			}
		}
		if v.Known && v.Met && strings.Contains(v.Target, "knockers in") {
			if f := r.floodAtTarget(sesameShell); f != nil && f.SocketDrops > 0 && f.Gen != nil && f.Gen.Sent > 0 {
				add("**Flood margin.** The flood target was met, but sesamed's capture socket still dropped %d frames "+
					"(%.1f%% of the flood; %s) and sesamed wrote %d log lines, one `Stage 1` line per spoofed knock to "+
					"its output and to LogFile. A knock is lost whenever the reader falls a few milliseconds behind, so "+
					"the count of knockers who get in depends on how much CPU the daemon finds free.",
					f.SocketDrops, 100*float64(f.SocketDrops)/float64(f.Gen.Sent), orUnknown(f.Capture), f.LogLines)
			}
		}
	}

	top := 0.0
	for _, n := range r.Noise {
		if n.Noise != nil && n.Noise.PPS > top {
			top = n.Noise.PPS
		}
	}
	if top > 0 && r.NoiseRate == 0 {
		add("**Generator.** Its top rate here, as fast as it could on one core (sendmmsg of 64 frames, noise rows), was "+
			"%.0f packets/s; every flood rate in the table is within it unless its achieved column says otherwise.", top)
	}
	if len(r.Flood) > 0 {
		add("**Knocker pacing.** The real knockers of the flood rows start %s apart, and latency samples at least 100 ms "+
			"apart: sesamed runs a door's start command at most 10 times per second (burst 20) and refuses completed "+
			"knocks beyond that (logged with SESAME_EVENT=refused), a bound against fork storms that knockd does not "+
			"have. Doors that only grant natively (`Open`) allow 100 per second (burst 200). The flood rows use the "+
			"shell-command door, so their knockers are paced to stay within its limit.", r.Stagger)
	}
	out = append(out, captureNotes(r)...)
	add("**Reading the numbers.** A latency sample is accurate to the connection-attempt interval (%s in the "+
		"latency tables, 5 ms in the flood table). p99 over fewer than 100 samples is the largest sample. CPU "+
		"times come from /proc in clock ticks (10 ms). The VM is shared with other work; the load average above "+
		"says how busy it was.", r.Interval)
	if r.Quick {
		add("**Quick run.** Few samples and one flood rate: this proves the bench works, it does not measure the targets.")
	}
	return out
}

// missNote says by how much and, from this run's numbers, why a target
// was missed.
func missNote(r *results, v verdict) string {
	switch {
	case strings.Contains(v.Target, "RSS"):
		return fmt.Sprintf("**Missed: memory under the flood.** sesamed's peak RSS was %s (%s).", v.Measured, v.Miss)
	case strings.Contains(v.Target, "knockers in"):
		f := r.floodAtTarget(sesameShell)
		if f == nil {
			return ""
		}
		ok, total := f.in()
		s := fmt.Sprintf("**Missed: flood.** Under the %.0f packets/s flood %d of %d real knockers got in (%s).", f.Rate, ok, total, v.Miss)
		if f.SocketDrops > 0 && f.Gen != nil && f.Gen.Sent > 0 {
			s += fmt.Sprintf(" The kernel dropped %d frames (%.1f%% of the flood) because sesamed's capture socket "+
				"was full (%s): at this rate that buffer holds a few milliseconds of traffic, so any pause of the "+
				"reader loses knocks, real ones included.", f.SocketDrops, 100*float64(f.SocketDrops)/float64(f.Gen.Sent), orUnknown(f.Capture))
		}
		if f.Gen != nil && f.Gen.Sent > 0 && f.LogLines > int64(f.Gen.Sent)/2 {
			s += fmt.Sprintf(" sesamed also wrote %d log lines during the flood (one `Stage 1` line per spoofed knock, "+
				"to its output and to LogFile), which costs its engine more than matching does.", f.LogLines)
		}
		if f.CPUPct > 0 {
			s += fmt.Sprintf(" Its CPU was %.0f%% of a core while the generator and the kernel's packet path took the other.", f.CPUPct)
		}
		return s
	case strings.Contains(v.Target, "packets per second"):
		slow := r.Match[0]
		for _, m := range r.Match {
			if m.Mpps < slow.Mpps {
				slow = m
			}
		}
		s := fmt.Sprintf("**Missed: matcher.** The slowest case, %s, runs at %.2f M packets/s (%s).", slow.Name, slow.Mpps, v.Miss)
		if slow.Name == "flood-first-knocks" {
			s += " Each of its packets comes from a new source, and the benchmark's doors `7000,8000,9000` and " +
				"`7000,8000,9001` share that first knock, so every packet misses in the attempt map, evicts the two " +
				"oldest first-stage attempts (map deletes) and inserts two new ones (a map insert) in a table kept at " +
				"its 65536-attempt limit: several cold cache lines per packet, which is also why the runs vary so much " +
				"on a shared VM."
		}
		return s
	case strings.Contains(v.Target, "÷"):
		return fmt.Sprintf("**Missed: %s** — %s.", v.Target, v.Miss)
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "not seen"
	}
	return s
}

// coreBound is the CPU share (percent of a core) from which a daemon that
// drops frames counts as bound by one core.
const coreBound = 90.0

// captureNotes explain the capture and drop-point rows from this run's
// numbers.
func captureNotes(r *results) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	var ebpf, classic *captureRow
	for i := range r.Capture {
		c := &r.Capture[i]
		if c.Err != "" || c.Gen == nil || c.Ports != 10000 {
			continue
		}
		if c.Variant == captureEBPF && (ebpf == nil || c.Gen.PPS > ebpf.Gen.PPS) {
			ebpf = c
		}
		if c.Variant == captureClassic && (classic == nil || c.Gen.PPS > classic.Gen.PPS) {
			classic = c
		}
	}
	if ebpf != nil && classic != nil {
		_, ns, _ := classic.perPacket()
		add("**Why the classic filter costs more.** With 10,000 knock ports on 2,000 addresses the classic program "+
			"cannot check the spec exactly within the kernel's limits, so it merges ports into ranges and lets the "+
			"frames between them through; sesamed reads, decodes and drops those in user space: %.1f%% of a core at "+
			"%.0f packets/s (about %.0f ns per packet of the whole flood). The eBPF filter looks every frame up in its "+
			"maps and drops it in the kernel: sesamed stayed at %.1f%% at %.0f packets/s, its idle work.",
			classic.DaemonCPU, classic.Gen.PPS, ns, ebpf.DaemonCPU, ebpf.Gen.PPS)
	}
	for _, c := range r.Capture {
		if c.Variant == captureKnockd && c.Err != "" && strings.Contains(c.Err, "before listening") {
			add("**knockd and large configs.** knockd did not start on the %s config: it compiles one pcap "+
				"filter naming every port and address, and libpcap's compiler gave up (`pcap_compile: out of "+
				"memory`).", c.config())
			break
		}
	}
	if len(r.Sweep) > 0 {
		lossless, first := r.dropPoint()
		var top *floodRow
		for i := range r.Sweep {
			f := &r.Sweep[i]
			if f.Err == "" && f.Gen != nil && (top == nil || f.Gen.PPS > top.Gen.PPS) {
				top = f
			}
		}
		switch {
		case first == nil && top != nil:
			add("**No AF_PACKET fanout.** Up to %.0f packets/s of spoofed first knocks (the generator's top rate "+
				"on its core) sesamed lost no frame and every knocker got in, at %.0f%% of a core: one core is not "+
				"the limit on this machine, so the capture stays one socket read by one goroutine. (Should it become "+
				"the limit, PACKET_FANOUT_HASH across sockets keeps one source on one reader, which the matcher "+
				"needs.)", top.Gen.PPS, top.CPUPct)
		case first != nil:
			line := fmt.Sprintf("**Drop point.** sesamed's capture first lost frames at %.0f packets/s, at %.0f%% of a core "+
				"(%d socket drops, %d of %d knockers in); below that, none up to %.0f packets/s.",
				first.Gen.PPS, first.CPUPct, max(first.SocketDrops, 0), okCount(first), len(first.Knockers), lossless)
			if first.CPUPct >= coreBound {
				line += " Its reader had a core to itself and used it up: one core is the limit, which is what " +
					"AF_PACKET fanout (PACKET_FANOUT_HASH, one source on one reader) would lift on a machine with cores to spare."
			} else {
				line += fmt.Sprintf(" It used less than a core (under %.0f%%), so it was not short of one: it lost frames "+
					"while waiting for a CPU that the generator, the kernel's packet path and the machine's other work "+
					"(load average %s at the end) held. More readers (AF_PACKET fanout) would wait for the same cores, "+
					"so the capture stays one socket read by one goroutine.", coreBound, r.Machine.LoadEnd)
			}
			add("%s", line)
		}
	}
	return out
}

func okCount(f *floodRow) int {
	ok, _ := f.in()
	return ok
}
