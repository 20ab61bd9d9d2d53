package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/eventlog"
	"github.com/sesame-knock/sesame/core/exec"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/configwatch"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/netmon"
	"github.com/sesame-knock/sesame/internal/trust"
	"github.com/sesame-knock/sesame/rescue"
)

// DaemonOptions configure the daemon (sesamed's command line).
type DaemonOptions struct {
	ConfigPath string
	Interfaces []string // -i: wins over the config's Interface
	Level      hclog.Level
	SkipIPv6   bool // -4
	StateDir   string
	Socket     string
	Stderr     io.Writer
	Version    string
	PidFile    string // overrides the config's PidFile
	LogFile    string // overrides the config's LogFile
	// ShutdownGrace bounds how long running commands may take to finish
	// on SIGTERM.
	ShutdownGrace time.Duration
}

// sesamed is one running daemon. Fields set in Run before any goroutine
// starts are read-only afterwards unless marked.
type sesamed struct {
	opts    DaemonOptions
	log     *eventlog.Logger
	journal *journal.Journal
	fw      firewall.Backend // nil when no door opens ports natively
	grants  *grant.Manager
	eng     *engine.Engine
	caps    *captures
	notify  *Notifier
	rescue  atomic.Pointer[rescue.Switch]

	// newRescue builds the rescue switch for a config (buildRescue;
	// tests that must not touch a firewall replace it).
	newRescue func(*config.Config) (*rescue.Switch, error)

	mu      sync.Mutex // guards cfg, cfgErr, cfgHash, host
	cfg     *config.Config
	cfgErr  string
	cfgHash string
	host    []netip.Addr // what the engine was last given as the host's addresses
}

// loadAtStart reads the config for the first start. An invalid config
// falls back to the last good one, which a bad edit followed by a crash
// or reboot must not keep the door keeper down without; cfgErr then says
// why the config file was not used. Without a last good config (a first
// start), or when it is invalid too, err is the config's error: sesamed
// exits 1 rather than run a daemon with no doors that reports itself
// started.
func loadAtStart(opts DaemonOptions) (content []byte, cfg *config.Config, cfgErr, err error) {
	content, _, cfgErr = configwatch.Read(opts.ConfigPath)
	if cfgErr == nil {
		if cfg, cfgErr = config.LoadBytes(opts.ConfigPath, content); cfgErr == nil {
			return content, cfg, nil, nil
		}
	}
	path := lastGoodPath(opts.StateDir)
	good, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("%w (no last good config to fall back on: %s does not exist)", cfgErr, path)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (last good config unreadable: %w)", cfgErr, err)
	}
	if cfg, err = config.LoadBytes(path, good); err != nil {
		return nil, nil, nil, fmt.Errorf("%w (the last good config %s is invalid too: %w)", cfgErr, path, err)
	}
	return nil, cfg, cfgErr, nil
}

// Run runs the daemon until ctx ends, then shuts down cleanly and
// returns nil. It returns an error when it cannot start.
func Run(ctx context.Context, opts DaemonOptions) error {
	// SIGHUP's default action ends the process: catch it from the first
	// moment, so a reload asked for while sesamed starts waits its turn.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	// The state directory's content runs commands as root (an overdue
	// grant's stop command, the last good config): refuse one anybody
	// else could have written, before reading anything from it.
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := trust.Tree(opts.StateDir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	content, cfg, cfgErr, err := loadAtStart(opts)
	if err != nil {
		return err
	}
	if opts.PidFile != "" {
		cfg.Options.PidFile = opts.PidFile
	}
	if opts.LogFile != "" {
		cfg.Options.LogFile = opts.LogFile
	}
	log, err := eventlog.New(eventlog.Options{Name: "sesamed", Level: opts.Level, Stderr: opts.Stderr,
		LogFile: cfg.Options.LogFile, UseSyslog: cfg.Options.UseSyslog})
	if err != nil {
		return err
	}
	defer log.Close()
	d := &sesamed{opts: opts, log: log, cfg: cfg, notify: NewNotifier(log.Named("notify"))}
	d.newRescue = d.buildRescue
	if cfgErr != nil {
		d.cfgErr = cfgErr.Error() + " (running the last good config, " + lastGoodPath(opts.StateDir) + ")"
		log.Error("config invalid, running the last good config from "+lastGoodPath(opts.StateDir)+": "+cfgErr.Error(), "error", cfgErr, "last_good", lastGoodPath(opts.StateDir))
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	ln, err := control.Listen(opts.Socket)
	if err != nil {
		log.Error("cannot start", "error", err)
		return err
	}
	defer ln.Close()
	if err := d.start(ctx); err != nil {
		log.Error("cannot start", "error", err)
		d.stop()
		return err
	}
	if cfgErr == nil {
		d.saveLastGood(content)
	}
	serr := d.serve(ctx, hup, ln)
	d.notify.Stopping()
	if serr != nil {
		log.Error("a component keeps failing, exiting so the service manager restarts sesamed", "error", serr)
	}
	log.Info("shutting down", event.KeyKind, event.Shutdown)
	d.stop()
	return serr
}

func (d *sesamed) start(ctx context.Context) error {
	cfg := d.cfg
	j, err := journal.Open(d.opts.StateDir, d.log.Named("journal"))
	if err != nil {
		return err
	}
	d.journal = j
	if guarded := guardedPorts(cfg); len(guarded) > 0 {
		kind, err := firewall.ParseKind(cfg.Options.Firewall)
		if err != nil {
			return err
		}
		fw, err := firewall.New(kind, d.log.Named("firewall"))
		if err != nil {
			return err
		}
		if err := fw.Setup(ctx, guarded); err != nil {
			return err
		}
		d.fw = fw
		d.log.Info("native grants through "+fw.Name(), "backend", fw.Name(), "guarded", knock.FormatSequence(guarded))
	}
	// Markers of start and stop commands (the directory's name predates
	// start markers).
	markers := filepath.Join(d.opts.StateDir, "stops")
	if err := os.MkdirAll(markers, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	runner := exec.New(exec.Options{Logger: d.log.Named("exec"), Timeout: commandLimit})
	var fw grant.Firewall
	if d.fw != nil {
		fw = d.fw
	}
	d.grants = grant.New(grant.Options{Journal: d.journal, Firewall: fw, Commands: runner,
		MarkerDir: markers, CommandLimit: commandLimit, Logger: d.log.Named("grant")})
	// Grants a previous run left open are resumed before any knock is seen.
	d.grants.Resume(d.journal.Pending(), cfg.Doors)
	if d.fw != nil {
		d.reconcile(ctx)
	}

	ifaces := d.opts.Interfaces
	if len(ifaces) == 0 {
		ifaces = cfg.Options.Interfaces
	}
	if len(ifaces) == 0 {
		ifaces = defaultInterfaces(d.log)
	}
	d.caps = newCaptures(ifaces, d.log.Named("capture"))
	eng, err := engine.New(cfg, engine.Options{Grants: d.grants, Logger: d.log.Named("engine"),
		OnFilter: d.caps.setDoorFilter, SkipIPv6: d.opts.SkipIPv6})
	if err != nil {
		return err
	}
	d.eng = eng
	d.caps.eng = eng
	return nil
}

// serve runs the components under a Supervisor until ctx ends (nil) or
// the supervisor escalates (its error: the process should exit non-zero
// so systemd restarts it).
func (d *sesamed) serve(ctx context.Context, hup <-chan os.Signal, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	sup := New("sesamed", Options{Logger: d.log.Named("supervisor")})
	sup.Add("engine", 5*time.Second, ServiceFunc(func(ctx context.Context, beat *Beater) error {
		return d.eng.Run(ctx, beat.Beat, time.Second)
	}))

	// Address and link changes: the filter and the matcher follow the
	// interfaces' addresses, and a capture waiting for its link retries
	// at once when it appears or comes up.
	if lm, err := netmon.New(netmon.Options{Logger: d.log.Named("links")}); err != nil {
		d.log.Warn("network changes not followed", "error", err)
	} else {
		defer lm.Close()
		goRun(func() { d.followLinks(ctx, lm) })
	}
	// The engine runs first: the addresses and filters below go through it.
	supErr := make(chan error, 1)
	goRun(func() { supErr <- sup.Serve(ctx) })
	d.refreshAddrs(ctx)
	attached := d.caps.openAll()
	for _, iface := range d.caps.ifaces {
		sup.Add("capture "+iface, 3*capture.HeartbeatInterval+time.Second, ServiceFunc(func(ctx context.Context, beat *Beater) error {
			return d.caps.serve(ctx, iface, beat)
		}))
	}

	goRun(func() { control.Serve(ctx, ln, d) })
	var watcher *configwatch.Watcher
	if _, sum, err := configwatch.Read(d.opts.ConfigPath); err == nil {
		watcher, err = configwatch.New(d.opts.ConfigPath, sum, d.applyConfig, configwatch.Options{Logger: d.log.Named("config")})
		if err != nil {
			d.log.Warn("config file not watched; reload with SIGHUP", "error", err)
		} else {
			goRun(func() { watcher.Run(ctx) })
		}
	}
	if pf := d.config().Options.PidFile; pf != "" {
		if err := writePidFile(pf, os.Getpid()); err != nil {
			d.log.Error("cannot write pid file: "+err.Error(), "path", pf, "error", err)
		} else {
			defer os.Remove(pf)
		}
	}
	hl := health{hb: sup.Heartbeats(), caps: d.caps}
	goRun(func() { NewWatchdog(d.notify, hl, d.log.Named("watchdog")).Run(ctx) })
	d.log.Info("starting up, listening on "+strings.Join(d.caps.ifaces, ","), "interfaces", strings.Join(d.caps.ifaces, ","), "attached", attached, "version", d.opts.Version, event.KeyKind, event.Start)
	d.notify.Ready()
	// A healthy start closes a rescue port that a failure opened.
	d.startRescue(ctx, d.config())
	// The heartbeat is refreshed only while every component is healthy: a
	// hung or dying daemon lets it lapse, and the kernel opens the rescue
	// port with no process needed.
	goRun(func() {
		rescue.Keep(ctx, d.rescue.Load, func() (bool, string) {
			ok, stale := hl.Healthy(time.Now())
			return ok, strings.Join(stale, ",")
		})
	})
	d.updateStatus(ctx)

	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var reconcile <-chan time.Time
	if d.fw != nil {
		t := time.NewTicker(d.config().Options.ReconcileInterval)
		defer t.Stop()
		reconcile = t.C
	}
	for {
		select {
		case <-ctx.Done():
			d.caps.closeAll()
			return nil
		case err := <-supErr:
			if err != nil && ctx.Err() == nil {
				d.caps.closeAll()
				return err
			}
		case <-hup:
			d.sighup(ctx, watcher)
		case <-reconcile:
			d.reconcile(ctx)
		case <-tick.C:
			d.updateStatus(ctx)
		}
	}
}

// sighup re-reads the config (the unit's ExecReload) and reopens the
// log file, as knockd does on HUP.
func (d *sesamed) sighup(ctx context.Context, w *configwatch.Watcher) {
	if err := d.log.Reopen(); err != nil {
		d.log.Error("reopening log file", "error", err)
	}
	if w == nil {
		content, sum, err := configwatch.Read(d.opts.ConfigPath)
		if err != nil {
			d.log.Error("config not reloaded, keeping the running one: "+err.Error(), "error", err)
			return
		}
		d.applyConfig(content, sum)
		return
	}
	changed, err := w.Reload(ctx)
	if err == nil && !changed {
		// knockd logs every HUP; the content is the running config's.
		d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", "SIGHUP", "changed", false)
		d.notify.Reloading()
		d.notify.Ready()
	}
}

// applyConfig swaps in new config content (the ConfigWatcher's OnChange).
// An invalid file keeps the running config; the error, with file and
// line, is logged and shown in STATUS until a good file replaces it.
func (d *sesamed) applyConfig(content []byte, sum [32]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.notify.Reloading()
	defer func() {
		d.notify.Ready()
		d.updateStatus(ctx)
	}()
	d.log.Info("re-reading config file: "+d.opts.ConfigPath, event.KeyKind, event.Reload, "trigger", "change")
	return d.reload(ctx, content)
}

// reload validates and prepares every component for the new config, and
// only then changes any: a refused reload changes nothing. The firewall's
// guarded ports are the one change that can still fail once everything
// is prepared, so they change after every check and before the engine's
// commit, which cannot fail (and if the engine could not be reached, the
// guarded ports are put back).
func (d *sesamed) reload(ctx context.Context, content []byte) error {
	fail := func(err error) error {
		d.mu.Lock()
		d.cfgErr = err.Error()
		d.mu.Unlock()
		d.log.Error("config not reloaded, keeping the running one: "+err.Error(), "error", err)
		return err
	}
	cfg, err := config.LoadBytes(d.opts.ConfigPath, content)
	if err != nil {
		return fail(err)
	}
	if err := d.apply(ctx, cfg, content); err != nil {
		return fail(err)
	}
	return nil
}

// apply is reload for a parsed config: validate what the config alone
// cannot tell, prepare, then commit.
func (d *sesamed) apply(ctx context.Context, cfg *config.Config, content []byte) error {
	// Validate.
	guarded := guardedPorts(cfg)
	if len(guarded) > 0 && d.fw == nil {
		return errors.New("doors with Open need a restart to set up the firewall backend")
	}
	// Prepare.
	prep, err := d.eng.Prepare(ctx, cfg)
	if err != nil {
		return err
	}
	rsw, rescueErr := d.newRescue(cfg)
	// Commit: the firewall, the last step that can fail, then the rest.
	if d.fw != nil {
		if err := d.fw.Setup(ctx, guarded); err != nil {
			d.eng.Discard(prep)
			return fmt.Errorf("firewall setup: %w", err)
		}
	}
	if err := d.eng.Commit(ctx, prep); err != nil {
		d.eng.Discard(prep)
		if d.fw != nil {
			if rerr := d.fw.Setup(context.Background(), guardedPorts(d.config())); rerr != nil {
				d.log.Error("firewall: restoring the running config's guarded ports: "+rerr.Error(), "error", rerr)
			}
		}
		return fmt.Errorf("engine: %w", err)
	}
	for _, w := range cfg.Warnings {
		d.log.Warn(w)
	}
	if rescueErr != nil {
		d.log.Error("rescue not updated: "+rescueErr.Error(), "error", rescueErr)
	} else if err := rsw.Install(ctx); err != nil {
		d.log.Error("rescue not updated: "+err.Error(), "error", err)
	} else {
		d.rescue.Store(rsw)
	}
	d.mu.Lock()
	d.cfg, d.cfgErr = cfg, ""
	d.mu.Unlock()
	d.saveLastGood(content)
	d.log.Info(fmt.Sprintf("config reloaded: %d doors", len(cfg.Doors)), "doors", len(cfg.Doors))
	return nil
}

// buildRescue builds the rescue Switch of cfg, in the firewall family the
// grants use when there is one (so both always agree), else in the
// config's.
func (d *sesamed) buildRescue(cfg *config.Config) (*rescue.Switch, error) {
	kind, err := firewall.ParseKind(cfg.Options.Firewall)
	if err != nil {
		return nil, err
	}
	if d.fw != nil {
		if k, err := firewall.ParseKind(d.fw.Name()); err == nil {
			kind = k
		}
	}
	log := d.log.Named("rescue")
	fw, err := firewall.NewRescue(kind, firewall.RescueSpec{Ports: cfg.Options.RescuePorts,
		From: cfg.Options.RescueFrom, After: cfg.Options.RescueAfter}, log)
	if err != nil {
		return nil, err
	}
	return rescue.New(fw, log), nil
}

// startRescue installs the rescue port's dead man's switch (or removes a
// leftover one when none is configured) and sets its heartbeat.
func (d *sesamed) startRescue(ctx context.Context, cfg *config.Config) {
	sw, err := d.newRescue(cfg)
	if err == nil {
		if err = sw.Start(ctx); err == nil {
			d.rescue.Store(sw)
			return
		}
	}
	if len(cfg.Options.RescuePorts) > 0 {
		d.log.Error("rescue port not armed: "+err.Error(), "error", err)
	} else {
		d.log.Debug("no rescue configured", "cleanup_error", err)
	}
}

func lastGoodPath(stateDir string) string { return filepath.Join(stateDir, "last-good.conf") }

// saveLastGood keeps content as the config to fall back to when the file
// is invalid at the next start.
func (d *sesamed) saveLastGood(content []byte) {
	path := lastGoodPath(d.opts.StateDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		d.log.Warn("cannot save the last good config", "error", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		d.log.Warn("cannot save the last good config", "error", err)
	}
}

func (d *sesamed) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

func (d *sesamed) reconcile(ctx context.Context) {
	var rep firewall.Report
	var err error
	d.grants.WithNative(func(want []firewall.Grant) {
		rep, err = firewall.Reconcile(ctx, d.fw, want, time.Now())
	})
	if err != nil {
		d.log.Error("reconcile: "+err.Error(), "error", err)
	}
	if rep.Recreated {
		d.log.Warn("reconcile: Sesame's firewall objects were missing (firewall flushed or reloaded) and were recreated", "backend", d.fw.Name())
	}
	for _, g := range rep.Restored {
		d.log.Warn("reconcile: restored grant "+g.String(), event.Event{Kind: event.Grant, Source: g.Src, GrantID: g.ID}.Args()...)
	}
	for _, g := range rep.Removed {
		d.log.Info("reconcile: removed stale grant "+g.String(), event.Event{Kind: event.Expire, Source: g.Src, GrantID: g.ID}.Args()...)
	}
}

// followLinks keeps addresses and captures in step with netlink events.
func (d *sesamed) followLinks(ctx context.Context, lm *netmon.Monitor) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-lm.Events():
			if !ok {
				return
			}
			d.log.Debug("link event", "change", ev.String())
			switch ev.Kind {
			case netmon.AddrAdded, netmon.AddrRemoved:
				d.refreshAddrs(ctx)
			case netmon.LinkCreated, netmon.LinkUp:
				d.caps.wake(ev.Ifname)
				d.refreshAddrs(ctx)
			}
		}
	}
}

func (d *sesamed) refreshAddrs(ctx context.Context) {
	addrs := netmon.InterfaceAddrs(d.caps.ifaces)
	if d.caps.setLocal(addrs) {
		d.eng.SetLocal(ctx, addrs)
	}
	// Knocks from any of the host's addresses never count, whichever
	// interface they are on (see match.Matcher.SetHost).
	host := netmon.HostAddrs()
	d.mu.Lock()
	same := slices.Equal(host, d.host)
	d.host = host
	d.mu.Unlock()
	if !same {
		d.eng.SetHost(ctx, host)
	}
}

// commandLimit is how long a door command may run before its process
// group is killed, also when it outlived a killed daemon.
const commandLimit = 2 * time.Minute

func (d *sesamed) updateStatus(ctx context.Context) {
	st := d.Status()
	s := fmt.Sprintf("%d doors on %s; %d grants, %d attempts", len(st.Doors), d.caps.describe(), st.Grants, st.Attempts)
	if f := failingSummary(d.grants.List()); f != "" {
		s += "; " + f
	}
	if sw := d.rescue.Load(); sw != nil && sw.Enabled() {
		s += "; " + sw.Summary()
	}
	if st.ConfigErr != "" {
		s += "; config error (running config kept): " + st.ConfigErr
	}
	d.notify.Status(s)
}

// stop releases what start acquired. Grants stay in the journal.
func (d *sesamed) stop() {
	if d.grants != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
		if err := d.grants.Close(ctx); err != nil {
			d.log.Warn(err.Error())
		}
		cancel()
	}
	if d.fw != nil && !keepsGrantsWhenStopped(d.fw) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.fw.Teardown(ctx); err != nil {
			d.log.Error("firewall teardown: "+err.Error(), "error", err)
		}
		cancel()
	}
	if d.eng != nil {
		d.eng.Close()
	}
	if d.journal != nil {
		d.journal.Close()
	}
}

// keepsGrantsWhenStopped says whether b stays in the kernel over a clean
// stop (see firewall.StopKeeper); the others are removed, closing their
// grants until the journal puts them back at the next start.
func keepsGrantsWhenStopped(b firewall.Backend) bool {
	k, ok := b.(firewall.StopKeeper)
	return ok && k.KeepOnStop()
}

func guardedPorts(cfg *config.Config) []knock.Port {
	seen := map[knock.Port]bool{}
	var out []knock.Port
	for _, d := range cfg.Doors {
		for _, p := range d.Open {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// failingSummary says, for STATUS=, which grants' stops keep failing:
// what they opened stays open until an admin acts.
func failingSummary(gs []grant.Grant) string {
	var n int
	var first grant.Grant
	for _, g := range gs {
		if g.State == grant.StopFailing.String() {
			if n == 0 {
				first = g
			}
			n++
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("STOP FAILING for grant %s (%s, %s): %s; see sesame grants", first.ID, first.Door, first.Source, first.LastError)
	}
	return fmt.Sprintf("STOP FAILING for %d grants (first %s, %s, %s: %s); see sesame grants", n, first.ID, first.Door, first.Source, first.LastError)
}

// Grants, Revoke, Forget and Status answer the control socket.
func (d *sesamed) Grants() []grant.Grant             { return d.grants.List() }
func (d *sesamed) Revoke(t string) ([]string, error) { return d.grants.Revoke(t) }
func (d *sesamed) Forget(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.grants.Forget(ctx, id)
}
func (d *sesamed) Status() control.Status {
	d.mu.Lock()
	cfg, cfgErr := d.cfg, d.cfgErr
	d.mu.Unlock()
	gs := d.grants.List()
	st := control.Status{Version: d.opts.Version, Config: d.opts.ConfigPath, Interfaces: d.caps.ifaces,
		Grants: len(gs), ConfigErr: cfgErr}
	for _, g := range gs {
		if g.State == grant.StopFailing.String() {
			st.StopFailing++
		}
	}
	for _, dr := range cfg.Doors {
		st.Doors = append(st.Doors, dr.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if es, err := d.eng.Stats(ctx); err == nil {
		st.Attempts = es.Match.Attempts
	}
	return st
}

// defaultInterfaces picks the interfaces of the default routes when the
// config names none (knockd would use eth0, which modern systems rarely
// have); eth0 when there is no default route.
func defaultInterfaces(log hclog.Logger) []string {
	names := netmon.DefaultRouteInterfaces()
	if len(names) == 0 {
		names = []string{config.DefaultInterface}
	}
	log.Info("no Interface configured, using " + strings.Join(names, ","))
	return names
}
