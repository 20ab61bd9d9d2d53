package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/eventlog"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/rescue"
)

// defaultConfig is sesamed's default config file, which says which ports
// the rescue opens and in which firewall.
const defaultConfig = "/etc/sesame/sesame.conf"

// rescueFlags are shared by the rescue subcommands.
type rescueFlags struct {
	config   string
	quiet    bool
	verbose  bool
	ifFailed bool
}

func rescueCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &rescueFlags{}
	c := &cobra.Command{
		Use:   "rescue status|open|close|remove [-c FILE]",
		Short: "Show, open or close the fail-open rescue port",
		Long: "With Rescue_Ports set, the kernel opens those ports (to Rescue_From only, if set) once sesamed has not " +
			"refreshed its heartbeat for Rescue_After seconds, so a dead or frozen daemon cannot lock you out. " +
			"open opens it now and keeps it open while sesamed runs, until close or sesamed's next start; close " +
			"puts the heartbeat back (it lapses again after Rescue_After unless sesamed refreshes it); remove " +
			"deletes the rescue from the firewall. Opening and closing are logged to journald (SESAME_EVENT=rescue-open|rescue-close).",
		Args: cobra.NoArgs,
	}
	pf := c.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", defaultConfig, "read Rescue_Ports, Rescue_After, Rescue_From and Firewall from `FILE`")
	pf.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but errors")
	pf.BoolVarP(&f.verbose, "verbose", "v", false, "also print the log entries on stderr")

	open := &cobra.Command{
		Use:   "open [--if-failed] [--quiet]",
		Short: "Open the rescue port now and hold it open",
		Long: "Open the rescue port now and hold it open until `sesame rescue close` or sesamed's next start. " +
			"Without a rescue in the config it only says so, and exits 0. If the config cannot be read, it opens " +
			"whatever rescue is installed in the kernel. For ExecStopPost=, --if-failed does nothing unless " +
			"$SERVICE_RESULT is set to something other than success.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.open(cmd.Context(), stdout, stderr) },
	}
	open.Flags().BoolVar(&f.ifFailed, "if-failed", false, "only act when $SERVICE_RESULT says the service failed")
	c.AddCommand(open,
		&cobra.Command{
			Use:   "close",
			Short: "Close the rescue port: put the heartbeat back",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return f.close(cmd.Context(), stdout, stderr) },
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show whether the rescue port is open, and how long the heartbeat lasts",
			Long: "Show whether the rescue port is open, and how long the heartbeat lasts. For scripts and monitoring, " +
				"the exit status says it: 0 when the rescue is closed (or off: no Rescue_Ports), 1 when it is open, " +
				"2 when it is not installed in the firewall or its state cannot be read.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return f.status(cmd.Context(), stdout, stderr) },
		},
		&cobra.Command{
			Use:   "remove",
			Short: "Delete the rescue from every firewall (for uninstalling)",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return f.remove(cmd.Context(), stdout, stderr) },
		},
	)
	return c
}

func (f *rescueFlags) logger(stderr io.Writer) (*eventlog.Logger, error) {
	out := io.Discard
	if f.verbose {
		out = stderr
	}
	return eventlog.New(eventlog.Options{Name: "sesame", Stderr: out})
}

func (f *rescueFlags) say(w io.Writer, format string, args ...any) {
	if !f.quiet {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// load reads the config and builds the rescue's Switch; sw is nil, with a
// notice printed, when the config has no rescue.
func (f *rescueFlags) load(log *eventlog.Logger, stdout io.Writer, what string) (*rescue.Switch, error) {
	// Parse only: the rescue needs [options], not the doors' one-time
	// sequence files (a knockd.conf may name ones this user cannot open).
	data, err := os.ReadFile(f.config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Parse(f.config, data)
	if err != nil {
		return nil, err
	}
	o := cfg.Options
	kind, err := firewall.ParseKind(o.Firewall)
	if err != nil {
		return nil, err
	}
	if len(o.RescuePorts) == 0 {
		f.say(stdout, "no rescue port configured in %s (Rescue_Ports): nothing to %s", f.config, what)
		return nil, nil
	}
	fw, err := firewall.NewRescue(kind, firewall.RescueSpec{Ports: o.RescuePorts, From: o.RescueFrom, After: o.RescueAfter}, log.Named("rescue"))
	if err != nil {
		return nil, err
	}
	return rescue.New(fw, log.Named("rescue")), nil
}

func (f *rescueFlags) open(ctx context.Context, stdout, stderr io.Writer) error {
	result := os.Getenv("SERVICE_RESULT")
	if f.ifFailed && (result == "" || result == "success") {
		return nil
	}
	reason := "" // held open by an admin
	if result != "" {
		reason = fmt.Sprintf("sesamed stopped: SERVICE_RESULT=%s EXIT_CODE=%s EXIT_STATUS=%s",
			result, os.Getenv("EXIT_CODE"), os.Getenv("EXIT_STATUS"))
	}
	log, err := f.logger(stderr)
	if err != nil {
		return err
	}
	defer log.Close()
	sw, err := f.load(log, stdout, "open")
	if err != nil {
		// A daemon that died of a broken config needs its rescue most:
		// open what the kernel has.
		if reason == "" {
			reason = "opened by an admin: sesame rescue open"
		}
		opened, oerr := rescue.OpenInstalled(ctx, firewall.OpenRescues, reason, log.Named("rescue"))
		if len(opened) > 0 {
			f.say(stdout, "cannot read the config (%v); opened the rescue installed in %s", err, strings.Join(opened, " and "))
		} else if oerr == nil {
			f.say(stdout, "cannot read the config (%v), and no rescue is installed", err)
		}
		return oerr
	}
	if sw == nil {
		return nil
	}
	if err := sw.Open(ctx, reason); err != nil {
		return err
	}
	f.say(stdout, "%s [%s]", sw.Summary(), sw.Backend())
	return nil
}

func (f *rescueFlags) close(ctx context.Context, stdout, stderr io.Writer) error {
	log, err := f.logger(stderr)
	if err != nil {
		return err
	}
	defer log.Close()
	sw, err := f.load(log, stdout, "close")
	if err != nil || sw == nil {
		return err
	}
	if err := sw.Close(ctx); err != nil {
		return err
	}
	f.say(stdout, "%s [%s]", sw.Summary(), sw.Backend())
	return nil
}

// Exit statuses of `sesame rescue status`.
const (
	statusClosed  = 0 // closed, or off
	statusOpen    = 1
	statusUnknown = 2 // not installed, or the state cannot be read
)

func (f *rescueFlags) status(ctx context.Context, stdout, stderr io.Writer) error {
	log, err := f.logger(stderr)
	if err != nil {
		return exitError{statusUnknown, "sesame: " + err.Error()}
	}
	defer log.Close()
	sw, err := f.load(log, io.Discard, "show")
	if err != nil {
		return exitError{statusUnknown, "sesame: " + err.Error()}
	}
	if sw == nil {
		fmt.Fprintf(stdout, "rescue off (no Rescue_Ports in %s)\n", f.config)
		return nil
	}
	st, err := sw.Status(ctx)
	if err != nil {
		return exitError{statusUnknown, "sesame: " + err.Error()}
	}
	fmt.Fprintf(stdout, "%s [%s]\n", st, sw.Backend())
	switch {
	case !st.Installed:
		return exitError{code: statusUnknown}
	case st.Open:
		return exitError{code: statusOpen}
	}
	return nil
}

// remove deletes the rescue from every family, whatever the config says
// (an uninstall must not leave one to lapse open).
func (f *rescueFlags) remove(ctx context.Context, stdout, stderr io.Writer) error {
	log, err := f.logger(stderr)
	if err != nil {
		return err
	}
	defer log.Close()
	fw, err := firewall.NewRescue(firewall.Auto, firewall.RescueSpec{}, log.Named("rescue"))
	if err != nil {
		return err
	}
	if err := rescue.New(fw, log.Named("rescue")).Remove(ctx); err != nil {
		return err
	}
	f.say(stdout, "rescue removed")
	return nil
}
