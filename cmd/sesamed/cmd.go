package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/daemon"
	"github.com/sesame-knock/sesame/internal/version"
)

// DefaultConfig is where sesamed reads its config unless -c says.
const DefaultConfig = "/etc/sesame/sesame.conf"

type flags struct {
	config, stateDir, socket, pidFile, logFile string
	ifaces                                     []string
	verbose, debug, only4, version, check      bool
	daemonize, lookup, teardown                bool
}

// errReported is run's error when what went wrong has been written to
// stderr already: sesamed exits 1 without a second message.
var errReported = errors.New("reported")

// run parses args and runs what they ask: the daemon until ctx ends (an
// ended ctx is not an error), or one of the one-shot commands. Its error
// makes sesamed exit 1.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f flags
	cmd := &cobra.Command{
		Use:   "sesamed [-c FILE] [-i IFACE[,IFACE...]] [-v] [-D] [-4] [-V] [--check] [--state-dir DIR]",
		Short: "Sesame port-knocking daemon, a drop-in for knockd",
		Long: "sesamed reads a knockd.conf-compatible configuration, captures knocks on the listed interfaces without libpcap, " +
			"and opens doors: knockd-style start/stop commands and native firewall grants (Open = 22/tcp). Every grant is journaled " +
			"under the state directory before it is applied, and revoked at its deadline even across crashes and restarts. " +
			"It runs in the foreground as a systemd service (Type=notify) and logs to stderr or journald.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.exec(cmd.Context(), stdout, stderr)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", DefaultConfig, "read the configuration from `FILE`")
	fl.StringSliceVarP(&f.ifaces, "interface", "i", nil, "capture on `IFACE` (a comma list); wins over the config's Interface")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log resets and other detail (debug level)")
	fl.BoolVarP(&f.debug, "debug", "D", false, "log every captured packet (trace level)")
	fl.BoolVarP(&f.only4, "only-ip-v4", "4", false, "ignore IPv6 knocks")
	fl.BoolVarP(&f.version, "version", "V", false, "print the version and exit")
	fl.BoolVar(&f.check, "check", false, "check the configuration and what starting with it needs, and exit 0 (it would start) or 1")
	fl.StringVar(&f.stateDir, "state-dir", "/var/lib/sesame", "keep the grants journal in `DIR`")
	fl.StringVar(&f.socket, "socket", control.DefaultSocket, "serve sesame grants/revoke on the unix socket `PATH`")
	fl.BoolVar(&f.teardown, "teardown", false, "remove Sesame's firewall objects (for uninstalling) and exit")
	// knockd's other flags, accepted so existing command lines keep working.
	fl.BoolVarP(&f.daemonize, "daemon", "d", false, "accepted for knockd compatibility; sesamed always runs in the foreground")
	fl.StringVarP(&f.pidFile, "pidfile", "p", "", "write the pid to `FILE` (overrides PidFile)")
	fl.StringVarP(&f.logFile, "logfile", "g", "", "knockd-format log `FILE` (overrides LogFile)")
	fl.BoolVarP(&f.lookup, "lookup", "l", false, "accepted for knockd compatibility; hostnames are not looked up")
	addGenMan(cmd)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

func (f *flags) exec(ctx context.Context, stdout, stderr io.Writer) error {
	if f.version {
		fmt.Fprintln(stdout, "sesamed", version.Version)
		return nil
	}
	if f.check {
		if f.checkConfig(ctx, stdout, stderr) != 0 {
			return errReported
		}
		return nil
	}
	if f.teardown {
		return teardown(ctx, stderr)
	}
	if f.daemonize {
		fmt.Fprintln(stderr, "sesamed: -d ignored: sesamed runs in the foreground (use its systemd unit)")
	}
	if f.lookup {
		fmt.Fprintln(stderr, "sesamed: -l ignored: knockers are logged by address")
	}
	level := hclog.Info
	switch {
	case f.debug:
		level = hclog.Trace
	case f.verbose:
		level = hclog.Debug
	}
	var ifaces []string
	for _, i := range f.ifaces {
		if i = strings.TrimSpace(i); i != "" {
			ifaces = append(ifaces, i)
		}
	}
	return daemon.Run(ctx, daemon.Options{
		ConfigPath: f.config, Interfaces: ifaces, Level: level, SkipIPv6: f.only4,
		StateDir: f.stateDir, Socket: f.socket, Stderr: stderr, Version: version.Version,
		PidFile: f.pidFile, LogFile: f.logFile,
	})
}

// teardown removes the firewall objects of every backend Sesame may have
// used; what is absent is skipped. Each failure is written to stderr.
func teardown(ctx context.Context, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var failed error
	// The rescue first: left behind, it would lapse open.
	if _, err := firewall.RemoveRescues(ctx); err != nil {
		fmt.Fprintf(stderr, "sesamed: teardown rescue: %v\n", err)
		failed = errReported
	}
	for _, k := range []firewall.Kind{firewall.NFTables, firewall.IPTablesNFT, firewall.IPTablesLegacy} {
		b, err := firewall.New(k, nil)
		if err != nil {
			continue // that tool is not installed
		}
		if err := b.Teardown(ctx); err != nil {
			fmt.Fprintf(stderr, "sesamed: teardown %s: %v\n", b.Name(), err)
			failed = errReported
		}
	}
	return failed
}
