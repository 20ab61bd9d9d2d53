package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/core/knock"
)

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "sesame-bench",
		Short:         "Benchmarks Sesame against knockd in network namespaces",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(genCmd(stdout), knockersCmd(stdout), listenCmd(stdout), allCmd(stdout, stderr))
	return root
}

// target holds the flags every sender shares.
type target struct {
	iface, dstMAC, dst, seq, flags string
}

func (t *target) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVarP(&t.iface, "interface", "i", "sesame1", "send on `IFACE` (in the namespace this runs in)")
	f.StringVar(&t.dstMAC, "dst-mac", "", "the receiving interface's `MAC` (required)")
	f.StringVar(&t.dst, "dst", "10.77.0.1", "the server's `ADDRESS`; its family is the traffic's")
	f.StringVar(&t.seq, "sequence", "7000,8000,9000", "the door's `SEQUENCE` (knockd syntax)")
	f.StringVar(&t.flags, "tcp-flags", "syn", "TCP `FLAGS` of TCP packets (comma list)")
}

func (t *target) parse() (mac net.HardwareAddr, dst netip.Addr, seq []knock.Port, flags uint8, err error) {
	if mac, err = net.ParseMAC(t.dstMAC); err != nil {
		return nil, dst, nil, 0, fmt.Errorf("--dst-mac: %w", err)
	}
	if dst, err = netip.ParseAddr(t.dst); err != nil {
		return nil, dst, nil, 0, fmt.Errorf("--dst: %w", err)
	}
	if seq, err = knock.ParseSequence(t.seq); err != nil {
		return nil, dst, nil, 0, fmt.Errorf("--sequence: %w", err)
	}
	for _, w := range strings.Split(t.flags, ",") {
		if w = strings.ToLower(strings.TrimSpace(w)); w == "" {
			continue
		}
		b, ok := knock.FlagNames[w]
		if !ok {
			return nil, dst, nil, 0, fmt.Errorf("--tcp-flags: unknown flag %q", w)
		}
		flags |= b
	}
	return mac, dst, seq, flags, nil
}

func sameFamily(dst netip.Addr, srcs []netip.Addr) error {
	for _, s := range srcs {
		if s.Is4() != dst.Is4() {
			return fmt.Errorf("source %s and destination %s are of different families", s, dst)
		}
	}
	return nil
}

func genCmd(stdout io.Writer) *cobra.Command {
	var t target
	var o genOptions
	var sources, spoof, avoid, avoidFile string
	c := &cobra.Command{
		Use:   "gen",
		Short: "Send raw knock, noise or flood traffic at a set rate and report the rate achieved (JSON)",
		Long: "gen writes Ethernet frames with AF_PACKET (sendmmsg) to one interface at --rate packets per second " +
			"(0: as fast as it can) until --count packets or --duration, whichever comes first, and prints what it sent. " +
			"Modes: knock (valid sequences from --sources), noise (ports no door uses), flood-first (first knocks " +
			"from spoofed sources), flood-wrong (later-stage knocks from spoofed sources). Spoofed sources come from --spoof. " +
			"Run it inside the client namespace only: it sends to whatever --dst-mac and --dst say.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.DstMAC, o.Dst, o.Seq, o.Flags, err = t.parse(); err != nil {
				return err
			}
			o.Iface = t.iface
			if o.Mode == modeKnock {
				if o.Sources, err = parseSources(sources); err != nil {
					return err
				}
				if err := sameFamily(o.Dst, o.Sources); err != nil {
					return err
				}
			} else {
				if o.Spoof, err = netip.ParsePrefix(spoof); err != nil {
					return fmt.Errorf("--spoof: %w", err)
				}
				if o.Spoof.Addr().Is4() != o.Dst.Is4() {
					return fmt.Errorf("--spoof %s and --dst %s are of different families", o.Spoof, o.Dst)
				}
			}
			for flag, list := range map[string]string{"--avoid": avoid, "--avoid-file": ""} {
				if flag == "--avoid-file" && avoidFile != "" {
					b, err := os.ReadFile(avoidFile)
					if err != nil {
						return fmt.Errorf("--avoid-file: %w", err)
					}
					list = strings.TrimSpace(string(b))
				}
				if list == "" {
					continue
				}
				ps, err := knock.ParsePortList(list)
				if err != nil {
					return fmt.Errorf("%s: %w", flag, err)
				}
				for _, p := range ps {
					o.Avoid = append(o.Avoid, p.Num)
				}
			}
			if o.Count == 0 && o.Duration <= 0 && o.Mode != modeKnock {
				return fmt.Errorf("gen needs --count or --duration: it must stop by itself")
			}
			rep, err := generate(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(rep)
		},
	}
	t.register(c)
	f := c.Flags()
	f.StringVar(&o.Mode, "mode", modeFloodFirst, "`MODE`: "+strings.Join(modes, ", "))
	f.StringVar(&sources, "sources", "", "real knockers' `ADDRESSES` for --mode knock (A,B or FIRST+N)")
	f.StringVar(&spoof, "spoof", "10.128.0.0/10", "spoofed sources' `PREFIX`")
	f.StringVar(&avoid, "avoid", "2222", "`PORTS` noise never hits besides the sequence's")
	f.StringVar(&avoidFile, "avoid-file", "", "a `FILE` with more such ports (the same comma list)")
	f.Float64Var(&o.Rate, "rate", 10000, "packets per `SECOND` (0: as fast as possible)")
	f.Uint64Var(&o.Count, "count", 0, "stop after `N` packets")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "stop after `D`")
	f.IntVar(&o.Batch, "batch", 64, "frames per sendmmsg call")
	return c
}

func knockersCmd(stdout io.Writer) *cobra.Command {
	var t target
	var o knockerOptions
	var sources string
	c := &cobra.Command{
		Use:   "knockers",
		Short: "Knock from real addresses and time each knock-to-connect (JSON samples)",
		Long: "knockers sends each source's sequence as raw frames, then opens a new TCP connection attempt to " +
			"--port every --interval until one completes or --timeout passes: the time from the last knock to the " +
			"completed connection is the sample. Sources must be addresses of the sending interface.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.DstMAC, o.Dst, o.Seq, o.Flags, err = t.parse(); err != nil {
				return err
			}
			o.Iface = t.iface
			if o.Sources, err = parseSources(sources); err != nil {
				return err
			}
			if err := sameFamily(o.Dst, o.Sources); err != nil {
				return err
			}
			samples, err := runKnockers(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(samples)
		},
	}
	t.register(c)
	f := c.Flags()
	f.StringVar(&sources, "sources", "10.77.1.1+50", "knockers' `ADDRESSES` (A,B or FIRST+N)")
	f.Uint16Var(&o.Port, "port", 2222, "the protected `PORT`")
	f.DurationVar(&o.Interval, "interval", 100*time.Microsecond, "spacing of connection attempts")
	f.DurationVar(&o.Life, "life", 50*time.Millisecond, "how long one attempt waits for its SYN-ACK")
	f.DurationVar(&o.Timeout, "timeout", 3*time.Second, "give up this long after the last knock")
	f.IntVar(&o.Concurrency, "concurrency", 1, "knockers active at once")
	f.DurationVar(&o.Stagger, "stagger", 0, "minimum spacing of knockers' starts")
	f.DurationVar(&o.Gap, "gap", 20*time.Millisecond, "pause after a knocker finished before the next starts")
	f.DurationVar(&o.GapJitter, "gap-jitter", 0, "add a random pause of up to this much to --gap (fixed seed)")
	f.DurationVar(&o.KnockInterval, "knock-delay", 0, "delay between a knocker's knocks (knock -d)")
	return c
}
