package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/internal/control"
)

// Exit statuses of sesame status and sesame reload; 3 is what systemctl
// status uses for a unit that is not running.
const (
	exitUnhealthy   = 1
	exitUnreachable = 3
)

func statusCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	var socket string
	c := &cobra.Command{
		Use:   "status [--json] [--socket PATH]",
		Short: "Say whether sesamed is healthy, and why not",
		Long: "Ask the running sesamed how it is: version and uptime, the config file and the last reload (when, what asked for it, " +
			"and the error with file and line when it was refused), each interface (capturing, or waiting and why), each door " +
			"(kind and grants), grants in total, knock attempts in progress, the rescue port, the firewall backend and its last " +
			"repair, the grants journal's size and where metrics go; then what is wrong, if anything. --json prints the same as JSON.\n\n" +
			"Exit status 0 when sesamed is healthy, 1 when a component is unhealthy or the last reload failed, " +
			"3 when sesamed cannot be reached (as systemctl status).",
		Example: "  sesame status\n  sesame status --json | jq .problems",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			st, err := control.NewClient(socket).Status(ctx)
			if err != nil {
				return clientError(err)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(stdout, st, time.Now())
			}
			if !st.Healthy {
				return exitError{code: exitUnhealthy}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&socket, "socket", control.DefaultSocket, "the daemon's control socket")
	return c
}

// clientError is the exit for a failed call: 3 when no daemon answers.
func clientError(err error) error {
	var u *control.UnreachableError
	if errors.As(err, &u) && !errors.Is(err, control.ErrUntrustedPeer) {
		return exitError{exitUnreachable, "sesame: " + err.Error() + " (is sesamed running?)"}
	}
	return exitError{1, "sesame: " + err.Error()}
}

func printStatus(w io.Writer, st control.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	up := now.Sub(st.Started).Round(time.Second)
	fmt.Fprintf(tw, "sesamed\t%s, up %s (since %s)\n", st.Version, up, when(st.Started))
	fmt.Fprintf(tw, "config\t%s\n", st.Config)
	rl := st.Reload
	if rl.OK {
		fmt.Fprintf(tw, "last reload\tOK at %s (%s); config in force since %s\n", when(rl.At), rl.Trigger, when(rl.InForce))
	} else {
		fmt.Fprintf(tw, "last reload\tFAILED at %s (%s); the config of %s keeps running:\n", when(rl.At), rl.Trigger, when(rl.InForce))
		fmt.Fprintf(tw, "\t  %s\n", firstNonEmpty(rl.Error, st.ConfigErr))
	}
	for i, in := range st.Interfaces {
		label := ""
		if i == 0 {
			label = "interfaces"
		}
		state := in.State
		switch {
		case in.State == "capturing" && in.Filter != "":
			state += " (" + in.Filter + " filter)"
		case in.Why != "":
			state = strings.ToUpper(state) + ": " + in.Why
		}
		fmt.Fprintf(tw, "%s\t%s: %s; %d knock packets, %d dropped\n", label, in.Name, state, in.Packets, in.Drops)
	}
	fmt.Fprintf(tw, "doors\t%d\n", len(st.Doors))
	for _, d := range st.Doors {
		kind := d.Kind
		if kind == "" {
			kind = "not in the running config"
		}
		if d.Disabled {
			kind += ", disabled"
		}
		fmt.Fprintf(tw, "\t  %s: %s, %s\n", d.Name, kind, plural(d.Grants, "grant"))
	}
	grants := plural(st.Grants, "grant")
	if st.StopFailing > 0 {
		grants += fmt.Sprintf(", %d STOP FAILING", st.StopFailing)
	}
	fmt.Fprintf(tw, "grants\t%s\n", grants)
	fmt.Fprintf(tw, "attempts\t%d in progress\n", st.Attempts)
	fmt.Fprintf(tw, "rescue\t%s\n", st.Rescue.Summary)
	fw := st.Firewall.Backend
	if fw == "" {
		fw = "none (no door opens ports natively)"
	}
	if !st.Firewall.LastRepair.IsZero() {
		fw += fmt.Sprintf("; last repair %s: %s (%d in all)", when(st.Firewall.LastRepair), st.Firewall.Repair, st.Firewall.Repairs)
	} else if st.Firewall.Backend != "" {
		fw += "; no repair needed"
	}
	fmt.Fprintf(tw, "firewall\t%s\n", fw)
	fmt.Fprintf(tw, "journal\t%s, %s\n", st.Journal.Path, bytesText(st.Journal.Bytes))
	var ms []string
	if st.Metrics.Listen != "" {
		ms = append(ms, st.Metrics.Listen)
	}
	if st.Metrics.File != "" {
		f := st.Metrics.File
		if !st.Metrics.FileAt.IsZero() {
			f += " (written " + when(st.Metrics.FileAt) + ")"
		}
		ms = append(ms, f)
	}
	if len(ms) == 0 {
		ms = append(ms, "off")
	}
	fmt.Fprintf(tw, "metrics\t%s\n", strings.Join(ms, ", "))
	if fs := st.Fleet; fs != nil {
		fmt.Fprintf(tw, "fleet\t%s\n", fleetText(fs))
	}
	tw.Flush()
	if st.Healthy {
		fmt.Fprintln(w, "\nhealthy")
		return
	}
	fmt.Fprintln(w, "\nUNHEALTHY:")
	for _, p := range st.Problems {
		fmt.Fprintln(w, "  - "+p)
	}
}

// fleetText is the fleet membership on one line.
func fleetText(fs *control.FleetStatus) string {
	head := fmt.Sprintf("group %s as node %s: ", fs.Group, fs.Node)
	switch {
	case fs.Off != "":
		return head + "OFF: " + fs.Off
	case !fs.Connected:
		return head + fmt.Sprintf("NOT CONNECTED (last contact %s, revision %d, %s waiting to be shared): %s",
			when(fs.LastContact), fs.Revision, plural(fs.Unpublished, "grant"), fs.Error)
	}
	t := head + fmt.Sprintf("connected, revision %d, lag %d", fs.Revision, fs.Lag)
	if fs.Unpublished > 0 {
		t += fmt.Sprintf(", %s being shared", plural(fs.Unpublished, "grant"))
	}
	if fs.Refused > 0 {
		t += fmt.Sprintf(", %d values refused", fs.Refused)
	}
	return t
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func reloadCmd(stdout io.Writer) *cobra.Command {
	var wait bool
	var socket string
	c := &cobra.Command{
		Use:   "reload [--wait] [--socket PATH]",
		Short: "Make sesamed re-read its config file",
		Long: "Ask the running sesamed to re-read its config file, as SIGHUP does. With --wait, return once the reload finished: " +
			"exit status 0 when the file's config is in force (or already was), 1 with the error (file and line) when it was refused " +
			"and the previous config keeps running. Without --wait, return once sesamed has the request. " +
			"Exit status 3 when sesamed cannot be reached.\n\n" +
			"sesamed.service's ExecReload= runs `sesame reload --wait`, so `systemctl reload sesamed` fails on a broken edit " +
			"and `systemctl status sesamed` shows why. (systemd's own reload by signal returns before the reload happened.)",
		Example: "  sesame reload --wait\n  systemctl reload sesamed",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// systemd gives ExecReload= 90 s; a reload is bounded at 30 s.
			ctx, cancel := context.WithTimeout(cmd.Context(), 80*time.Second)
			defer cancel()
			res, err := control.NewClient(socket).Reload(ctx, wait)
			if err != nil {
				var u *control.UnreachableError
				if errors.As(err, &u) {
					return clientError(err)
				}
				return exitError{1, "sesame reload: config refused, the previous config keeps running: " + err.Error()}
			}
			switch {
			case res.Queued:
				fmt.Fprintln(stdout, "reload requested")
			case res.Changed:
				fmt.Fprintf(stdout, "reloaded: the new config is in force (%s)\n", plural(res.Doors, "door"))
			default:
				fmt.Fprintf(stdout, "reloaded: the file holds the config already in force (%s)\n", plural(res.Doors, "door"))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "return once the reload finished, with its result")
	c.Flags().StringVar(&socket, "socket", control.DefaultSocket, "the daemon's control socket")
	return c
}
