package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// The SPA section's markdown and targets (spabench.go runs it).

// The flood cases of BenchmarkSPAFlood, as the report names them.
var spaFloodCases = map[string]struct{ flood, server string }{
	"fwknop-quiet":          {"none", "sesamed, nftables"},
	"fwknop-quiet-iptables": {"none", "sesamed, iptables-nft"},
	"fwknop-garbage-20k":    {"fwknop garbage 20k/s", "sesamed, nftables"},
	"fwknop-garbage-100k":   {"fwknop garbage 100k/s", "sesamed, nftables"},
	"ssh-forged-20k":        {"SSH forged 20k/s", "sesamed, nftables"},
	"fwknopd-quiet":         {"none", "**fwknopd**"},
	"fwknopd-garbage-20k":   {"fwknop garbage 20k/s", "**fwknopd**"},
}

// The cases of BenchmarkSPAPath and BenchmarkVerify, as the report names them.
var spaCaseNames = map[string]string{
	"fwknop-garbage":         "fwknop garbage (one HMAC)",
	"fwknop-not-spa":         "not SPA (binary junk, no HMAC)",
	"fwknop-replay":          "fwknop replay (keyed 64-bit hash)",
	"fwknop-replay-restored": "fwknop replay restored from the journal",
	"ssh-unknown-key":        "SSH knock naming an unknown key (a map lookup)",
	"ssh-replay":             "SSH knock replay (no signature check)",
	"ssh-ed25519":            "ssh-ed25519",
	"sk-ed25519":             "sk-ssh-ed25519@openssh.com",
	"ecdsa-nistp256":         "ecdsa-sha2-nistp256",
	"sk-ecdsa-nistp256":      "sk-ecdsa-sha2-nistp256@openssh.com",
	"ecdsa-nistp384":         "ecdsa-sha2-nistp384",
	"ecdsa-nistp521":         "ecdsa-sha2-nistp521",
	"rsa3072-sha512":         "RSA 3072, rsa-sha2-512",
	"rsa3072-sha256":         "RSA 3072, rsa-sha2-256",
	"rsa4096-sha512":         "RSA 4096, rsa-sha2-512",
	"rsa8192-sha512":         "RSA 8192, rsa-sha2-512",
}

func spaName(name string) string {
	if n, ok := spaCaseNames[name]; ok {
		return n
	}
	return name
}

// spaReport writes the three SPA sections; nothing when the run left
// them out.
func spaReport(w io.Writer, r *results) {
	s := r.SPA
	if s == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	fwknopd := "Debian's fwknopd"
	if s.Fwknopd != "" {
		fwknopd += " " + s.Fwknopd
	}
	p("\n## SPA: real packets under a flood\n\n")
	p("From `%s` (`BenchmarkSPAFlood`, as root; it builds its own namespaces). sesamed (nftables, and one row "+
		"iptables-nft) with one access.conf stanza or one authorized key; %s (iptables) with the same stanza, the same "+
		"garbage and the same real packets. The client namespace floods udp/62201 from spoofed sources: *fwknop garbage* "+
		"is random base64 of an SPA packet's size from 4096 sources (one HMAC each); *SSH forged* is issue 14's flood, "+
		"half the packets naming the real key with another key's signature from 4 sources (each would cost a signature "+
		"check), half naming unknown keys from 4000. Real packets (fwknop's, built as `sesame spa` builds them, or signed "+
		"by the listed key) are sent one after another, each from its own address and for its own `-a` address. *In* "+
		"counts real packets whose grant the server logged within 5 s (fwknopd: its \"for ADDR ->\" rule line); *open* is "+
		"from sending to that log line (polled every 10 ms). CPU is the server's user+sys over the case (%% of one core; "+
		"left out for the cases without a flood), RSS its peak (VmHWM).\n\n", s.FloodCmd, fwknopd)
	if s.Left != "" {
		p("This run left out: %s.\n\n", s.Left)
	}
	if s.FloodErr != "" {
		p("Failed: %s\n\n", oneLine(s.FloodErr))
	}
	if len(s.Flood) > 0 {
		p("| Flood | Server | Achieved pps | Real packets in | Open median / p99 ms | Server CPU | Peak RSS |\n")
		p("|---|---|---:|---:|---:|---:|---:|\n")
		for _, f := range s.Flood {
			c, ok := spaFloodCases[f.Name]
			if !ok {
				c.flood, c.server = f.Name, "—"
			}
			pps, cpu, open := "—", "—", "—"
			if c.flood != "none" {
				pps, cpu = fmt.Sprintf("%.0f", f.FloodPPS), fmt.Sprintf("%.1f%%", f.CPUPct)
			}
			if f.In > 0 {
				open = fmt.Sprintf("%s / %s", ms(f.OpenP50MS), ms(f.OpenP99MS))
			}
			in := fmt.Sprintf("%d / %d", f.In, f.Sent)
			if f.In == 0 {
				in = "**" + in + "**"
			}
			p("| %s | %s | %s | %s | %s | %s | %.1f MiB |\n", c.flood, c.server, pps, in, open, cpu, f.RSSMiB)
		}
		p("\n%s\n", spaFloodSummary(s))
	}

	p("\n## SPA: what one flood packet costs sesamed\n\n")
	p("From `%s` (`BenchmarkSPAPath`): the daemon's path from the capture's hand-off to a refusal (queue copy, verifier, "+
		"counters, rate-limited log line), per kind of packet a flood is made of.", s.PathCmd)
	costTable(w, s.Path, s.PathErr, false)

	p("\n## SSH-signed knocks: verification cost per key type\n\n")
	p("From `%s`: accepting one knock, every check including the signature (replay cache a no-op); on a loaded machine "+
		"absolute times are inflated, the ratios are what the budgets use. *Cost units* are what a check takes from the "+
		"key's and the server's signature budgets.", s.VerCmd)
	costTable(w, s.Verify, s.VerErr, true)
}

// costTable is the table of SPAPath (ns) or Verify (µs and cost units).
func costTable(w io.Writer, rows []costRow, errText string, verify bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	switch {
	case len(rows) > 0 && rows[0].Runs == 1:
		p(" Each case ran once.")
	case len(rows) > 0:
		p(" Each case ran %d times: the median, and the fastest and slowest run; allocations are the most of any run.", rows[0].Runs)
	}
	p("\n\n")
	if errText != "" {
		p("Failed: %s\n\n", oneLine(errText))
	}
	if len(rows) == 0 {
		return
	}
	if verify {
		p("| Key type | µs per knock (median) | fastest – slowest | Cost units | Allocations |\n|---|---:|---:|---:|---:|\n")
		for _, c := range rows {
			p("| %s | %.0f | %.0f – %.0f | %g | %g |\n", spaName(c.Name), c.NsPerOp/1e3, c.MinNs/1e3, c.MaxNs/1e3, c.CostUnits, c.AllocsPerOp)
		}
		return
	}
	p("| Packet | ns (median) | fastest – slowest | Allocations |\n|---|---:|---:|---:|\n")
	for _, c := range rows {
		p("| %s | %.0f | %.0f – %.0f | %g |\n", spaName(c.Name), c.NsPerOp, c.MinNs, c.MaxNs, c.AllocsPerOp)
	}
}

// spaFloodSummary says what the flood table shows, from its numbers.
func spaFloodSummary(s *spaResults) string {
	var out []string
	if g := s.floodCase("fwknop-garbage-20k"); g != nil {
		line := fmt.Sprintf("At 20,000 garbage packets per second sesamed admitted %d of %d real packets", g.In, g.Sent)
		if g.In > 0 {
			line += fmt.Sprintf(" (p99 %s ms to open)", ms(g.OpenP99MS))
		}
		if d := s.floodCase("fwknopd-garbage-20k"); d != nil {
			line += fmt.Sprintf("; Debian's fwknopd, under the same flood in the same run, %d of %d, using %.1f%% CPU", d.In, d.Sent, d.CPUPct)
			if q := s.floodCase("fwknopd-quiet"); q != nil && q.In > 0 {
				line += fmt.Sprintf(" (without the flood it admitted %d of %d, median %s ms; why the flood keeps them out was not investigated)",
					q.In, q.Sent, ms(q.OpenP50MS))
			}
		}
		out = append(out, line+".")
	}
	if h := s.floodCase("fwknop-garbage-100k"); h != nil {
		line := fmt.Sprintf("At 100,000 per second (the sender kept %.0f) sesamed admitted %d of %d", h.FloodPPS, h.In, h.Sent)
		if h.In < h.Sent {
			line += ": the verifier, one HMAC per garbage packet, and the flood's sender share two cores; full queue lanes " +
				"and the kernel socket then drop, counted, not logged"
		}
		out = append(out, line+".")
	}
	out = append(out, "Each real packet comes from its own address: from one address they would all share its queue lane "+
		"(an earlier version of this benchmark lost a sixth to a quarter of them at 100k/s and one of 20 at 20k/s), and SSH "+
		"knocks in quick succession would meet that address's signature budget (4, then one per 2 s), whatever the flood.")
	return strings.Join(out, " ")
}

// Issue 13's flood targets: real packets get in under 20,000 garbage
// packets/s, within a second, where fwknopd lets none in.
const (
	targetSPAIn      = 99 // % of real packets
	targetSPAOpenP99 = 1000.0
)

// spaVerdicts are the SPA flood's targets, against the fwknop-garbage-20k
// case and fwknopd's beside it; not measured when the run did not run
// them (fwknopd left out: the comparison is not measured).
func (r *results) spaVerdicts() []verdict {
	in := verdict{Target: "real SPA packets in under a 20k packets/s garbage flood on the SPA port: sesamed (nftables) vs Debian's fwknopd, same run",
		Required: fmt.Sprintf("sesamed ≥ %d%%, and ≥ fwknopd", targetSPAIn)}
	open := verdict{Target: "time to open of those packets, p99 (sesamed)", Required: fmt.Sprintf("< %.0f ms", targetSPAOpenP99)}
	g := r.SPA.floodCase("fwknop-garbage-20k")
	if g == nil || g.Sent == 0 {
		return []verdict{in, open}
	}
	open.Known, open.Met = true, g.In > 0 && g.OpenP99MS < targetSPAOpenP99
	switch {
	case g.In == 0:
		open.Measured, open.Miss = fmt.Sprintf("none of %d opened within 5 s", g.Sent), "no packet opened"
	default:
		open.Measured = fmt.Sprintf("%s ms (median %s ms, %d packets)", ms(g.OpenP99MS), ms(g.OpenP50MS), g.In)
		if !open.Met {
			open.Miss = fmt.Sprintf("%.0f ms over", g.OpenP99MS-targetSPAOpenP99)
		}
	}
	d := r.SPA.floodCase("fwknopd-garbage-20k")
	if d == nil || d.Sent == 0 {
		return []verdict{in, open}
	}
	share := func(f *spaFloodRow) float64 { return float64(f.In) / float64(f.Sent) }
	need := int(math.Ceil(float64(targetSPAIn*g.Sent) / 100))
	in.Known = true
	in.Met = g.In >= need && share(g) >= share(d)
	in.Measured = fmt.Sprintf("sesamed %d of %d (%.0f%%), fwknopd %d of %d (%.0f%%)", g.In, g.Sent, 100*share(g), d.In, d.Sent, 100*share(d))
	switch {
	case g.In < need:
		in.Miss = fmt.Sprintf("%d packets short", need-g.In)
	case !in.Met:
		in.Miss = "fwknopd admitted a larger share"
	}
	return []verdict{in, open}
}
