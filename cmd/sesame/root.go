package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/knockclient"
	"github.com/sesame-knock/sesame/internal/preflight"
	"github.com/sesame-knock/sesame/internal/version"
)

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "sesame",
		Short:         "Sesame's client and admin tool",
		Long:          "sesame knocks on a Sesame (or knockd) server the way knockd's knock client does, checks config files, and lists and revokes the grants of a running sesamed.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(knockCmd(stdout, stderr), checkCmd(stdout), grantsCmd(stdout), revokeCmd(stdout))
	root.AddCommand(statusCmd(stdout), reloadCmd(stdout))
	root.AddCommand(rescueCmd(stdout, stderr), spaCmd(stdout, stderr))
	root.AddCommand(genManCmd(root))
	return root
}

func knockCmd(stdout, stderr io.Writer) *cobra.Command {
	var opts knockclient.Options
	var delayMS int
	var v4, v6, verbose bool
	c := &cobra.Command{
		Use:   "knock [-u] [-d MS] [-4|-6] [-v] HOST PORT[:PROTO]...",
		Short: "Knock on HOST's ports, like knockd's knock client",
		Long: "Send one knock per PORT to HOST, in order. A TCP knock is a non-blocking connect that is closed at once (one SYN); " +
			"a UDP knock is one datagram with a one-byte payload. Only the lowercase suffix :udp selects UDP, as in knock.",
		Example: "  sesame knock myserver.example.com 123:tcp 456:udp 789:tcp",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				cmd.Usage()
				return exitError{code: 1}
			}
			if delayMS < 0 {
				return exitError{1, "error: delay cannot be negative"}
			}
			switch {
			case v4 && v6:
				return exitError{1, "error: -4 and -6 exclude each other"}
			case v4:
				opts.Family = "ip4"
			case v6:
				opts.Family = "ip6"
			}
			opts.Delay = time.Duration(delayMS) * time.Millisecond
			if verbose {
				opts.Verbose = stdout
			}
			var targets []knockclient.Target
			for _, a := range args[1:] {
				targets = append(targets, knockclient.ParseTarget(a))
			}
			if err := knockclient.Knock(cmd.Context(), args[0], targets, opts); err != nil {
				return exitError{1, err.Error()}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVarP(&opts.UDP, "udp", "u", false, "make all port hits use UDP (default is TCP)")
	f.IntVarP(&delayMS, "delay", "d", 0, "wait `MS` milliseconds between port hits")
	f.BoolVarP(&v4, "ipv4", "4", false, "force IPv4")
	f.BoolVarP(&v6, "ipv6", "6", false, "force IPv6")
	f.BoolVarP(&verbose, "verbose", "v", false, "be verbose")
	return c
}

func checkCmd(stdout io.Writer) *cobra.Command {
	var unit string
	c := &cobra.Command{
		Use:   "check [--unit FILE|none] FILE",
		Short: "Check a config file and what sesamed needs to start with it",
		Long: "Parse FILE as sesamed would, including its one-time sequence files, and check what sesamed needs at start: " +
			"that it can write LogFile, PidFile and the one-time files (also under the sandbox of the installed sesamed.service, " +
			"with the fix when it forbids one), that the interfaces exist, and that the firewall native grants and the rescue port " +
			"need is there (run as root for the permissions and the firewall). Every problem names its file and line. " +
			"Warnings (a door that opens nothing, two doors with one sequence, an interface that is not up yet) do not fail the check.\n\n" +
			"Exit status 0 when sesamed can start with FILE, 1 otherwise.",
		Example: "  sesame check /etc/sesame/sesame.conf\n  sesame check /etc/knockd.conf",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := preflight.Options{}
			switch unit {
			case "none":
			case "":
				sb, err := preflight.InstalledUnit()
				if err != nil {
					return exitError{1, err.Error()}
				}
				opts.Sandbox = sb
			default:
				sb, err := preflight.LoadUnit(unit)
				if err != nil {
					return exitError{1, err.Error()}
				}
				opts.Sandbox = sb
			}
			cfg, rep := preflight.Load(cmd.Context(), args[0], opts)
			for _, n := range rep.Notes {
				fmt.Fprintln(stdout, "note:", n)
			}
			for _, w := range rep.Warnings {
				fmt.Fprintln(stdout, "warning:", w)
			}
			if err := rep.Err(); err != nil {
				return exitError{1, err.Error()}
			}
			fmt.Fprintf(stdout, "%s: OK, %d door(s)\n", args[0], len(cfg.Doors))
			for _, d := range cfg.Doors {
				what := []string{}
				if d.Start.Set && d.Start.Text != "" {
					what = append(what, "command")
				}
				if len(d.Open) > 0 {
					what = append(what, "opens "+knock.FormatSequence(d.Open))
				}
				state := ""
				if d.Disabled {
					state = " (disabled)"
				}
				fmt.Fprintf(stdout, "  [%s] %s%s %s\n", d.Name, knock.FormatSequence(d.Sequence), state, strings.Join(what, ", "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&unit, "unit", "", "check against the sandbox of this systemd unit `FILE` instead of the installed sesamed.service (none: no sandbox)")
	return c
}

func grantsCmd(stdout io.Writer) *cobra.Command {
	var asJSON, inFleet bool
	var socket, stateDir string
	c := &cobra.Command{
		Use:   "grants [--json] [--fleet] [--socket PATH | --state-dir DIR]",
		Short: "List the grants sesamed holds",
		Long: "List the grants a running sesamed holds: id, door (an SPA grant's stanza, spa#N, or ssh), source, who asked for an SPA grant " +
			"(the fwknop packet's user name, or the SSH key's comment), ports or stop command, time left and state " +
			"(starting, active, revoking, stop failing, or revoked, not journaled), and how a failed start command ended. With --state-dir, read the journal in DIR " +
			"directly, which works while the daemon is down; the states mean the same, read from the journal and the command markers.\n\n" +
			"With --fleet, list the live grants of the daemon's fleet group instead, as etcd holds them: id, door, source, ports, time left, " +
			"the node that made each, who asked for it, and whether this node holds it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if inFleet {
				if stateDir != "" {
					return errors.New("--fleet asks the daemon; it cannot be used with --state-dir")
				}
				l, err := control.NewClient(socket).FleetGrants(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(l)
				}
				printFleetGrants(stdout, l, time.Now())
				return nil
			}
			var gs []grant.Grant
			if stateDir != "" {
				var err error
				if gs, err = grant.Journaled(stateDir); err != nil {
					return err
				}
			} else {
				var err error
				gs, err = control.NewClient(socket).Grants(cmd.Context())
				if errors.Is(err, control.ErrUntrustedPeer) {
					return err
				}
				if err != nil {
					return fmt.Errorf("%w (is sesamed running? --state-dir reads the journal without it)", err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if gs == nil {
					gs = []grant.Grant{}
				}
				return enc.Encode(gs)
			}
			printGrants(stdout, gs, time.Now())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&inFleet, "fleet", false, "list the live grants of the daemon's fleet group (all nodes)")
	c.Flags().StringVar(&socket, "socket", control.DefaultSocket, "the daemon's control socket")
	c.Flags().StringVar(&stateDir, "state-dir", "", "read the grants journal in `DIR` instead of asking the daemon")
	return c
}

// printFleetGrants prints `sesame grants --fleet`.
func printFleetGrants(w io.Writer, l control.FleetList, now time.Time) {
	fmt.Fprintf(w, "fleet %s, node %s, revision %d\n", l.Group, l.Node, l.Revision)
	for _, r := range l.Refused {
		fmt.Fprintf(w, "refused: %s\n", r)
	}
	if len(l.Grants) == 0 {
		fmt.Fprintln(w, "no live grants in the group")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDOOR\tSOURCE\tOPENS\tTIME LEFT\tORIGIN\tIDENTITY\tHERE")
	for _, g := range l.Grants {
		left := max(g.Deadline.Sub(now).Round(time.Second), 0)
		id, here := g.Identity, "no"
		if id == "" {
			id = "-"
		}
		if g.Here {
			here = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Door, g.Source, g.Ports, left, g.Origin, id, here)
	}
	tw.Flush()
}

func printGrants(w io.Writer, gs []grant.Grant, now time.Time) {
	if len(gs) == 0 {
		fmt.Fprintln(w, "no active grants")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	who := false // a column for SPA grants' users, when there are any
	for _, g := range gs {
		who = who || g.Auth != ""
	}
	if who {
		fmt.Fprintln(tw, "ID\tDOOR\tSOURCE\tUSER\tOPENS\tTIME LEFT\tSTATE")
	} else {
		fmt.Fprintln(tw, "ID\tDOOR\tSOURCE\tOPENS\tTIME LEFT\tSTATE")
	}
	for _, g := range gs {
		opens := g.Ports
		if opens == "" {
			opens = "stop: " + g.StopCmd
		}
		left := g.Deadline.Sub(now).Round(time.Second)
		if left < 0 {
			left = 0
		}
		state := g.State
		if g.StartError != "" {
			state += " (start failed: " + g.StartError + ")"
		}
		switch {
		case g.LastError != "" && g.Attempts > 0:
			state += fmt.Sprintf(" (%d tries, last: %s)", g.Attempts, g.LastError)
		case g.LastError != "":
			state += fmt.Sprintf(" (last: %s)", g.LastError)
		}
		if !who {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Door, g.Source, opens, left, state)
			continue
		}
		user := "-"
		if g.Auth != "" {
			// The SPA user name is as the packet claimed it; an SSH key's
			// comment is what authorized_keys says.
			user = fmt.Sprintf("%q (%s)", g.User, g.Auth)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Door, g.Source, user, opens, left, state)
	}
	tw.Flush()
}

func revokeCmd(stdout io.Writer) *cobra.Command {
	var socket string
	var forget bool
	c := &cobra.Command{
		Use:   "revoke [--forget] ID|ADDRESS",
		Short: "Revoke a grant now",
		Long: "Revoke now the grant with this ID, or every grant held by this source address: the stop command runs and native access is removed. " +
			"An ID may be shortened to a prefix of at least 4 characters that names one grant; a prefix that names several lists them. " +
			"A grant whose stop keeps failing (state \"stop failing\" in sesame grants) is retried at once. " +
			"When sesamed is in a fleet (Fleet_Endpoints), the grant is revoked on every node of the group: ID may name a grant " +
			"another node made (see sesame grants --fleet), and ADDRESS ends that source's grants in the whole group.\n\n" +
			"With --forget ID, end a grant whose stop keeps failing without running it again, after closing by hand what it opened: " +
			"the journal records it as forgotten.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if forget {
				if err := control.NewClient(socket).Forget(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "forgotten", args[0])
				return nil
			}
			ids, err := control.NewClient(socket).Revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, id := range ids {
				fmt.Fprintln(stdout, "revoked", id)
			}
			return nil
		},
	}
	c.Flags().StringVar(&socket, "socket", control.DefaultSocket, "the daemon's control socket")
	c.Flags().BoolVar(&forget, "forget", false, "end the grant ID whose stop keeps failing, without running it again")
	return c
}
