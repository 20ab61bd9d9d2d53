package daemon

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/eventlog"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/metrics"
	"github.com/sesame-knock/sesame/internal/netmon"
	"github.com/sesame-knock/sesame/internal/preflight"
	"github.com/sesame-knock/sesame/rescue"
	"github.com/sesame-knock/sesame/supervisor"
)

// Options configure the daemon (sesamed's command line).
type Options struct {
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

// deps are the daemon's ways into the kernel and the clock; Run uses the
// real ones, tests replace them.
type deps struct {
	now         func() time.Time
	listen      func(path string) (net.Listener, error)
	newBackend  func(firewall.Kind, hclog.Logger) (firewall.Backend, error)
	newRescueFW func(firewall.Kind, firewall.RescueSpec, hclog.Logger) (rescue.Firewall, error)
	openCapture func(iface string, spec capture.FilterSpec) (handle, error)
	newLinks    func(netmon.Options) (linkEvents, error)
	listenTCP   func(network, addr string) (net.Listener, error) // nil: net.Listen
	// preflight checks what the start needs (preflight.Check).
	preflight func(context.Context, *config.Config, preflight.Options) *preflight.Report
}

func osDeps() deps {
	return deps{
		now:        time.Now,
		listen:     control.Listen,
		newBackend: firewall.New,
		newRescueFW: func(k firewall.Kind, s firewall.RescueSpec, l hclog.Logger) (rescue.Firewall, error) {
			r, err := firewall.NewRescue(k, s, l)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		openCapture: func(iface string, spec capture.FilterSpec) (handle, error) {
			h, err := capture.Open(iface, spec)
			if err != nil {
				return nil, err
			}
			return h, nil
		},
		newLinks: func(o netmon.Options) (linkEvents, error) {
			m, err := netmon.New(o)
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		preflight: preflight.Check,
	}
}

// daemon is one running sesamed. The fields set by newDaemon and by the
// services' starts are read-only once Run has started them all, unless
// marked.
type daemon struct {
	opts   Options
	deps   deps
	log    *eventlog.Logger
	notify *supervisor.Notifier
	// failed receives the supervisor's escalation: Run then stops the
	// daemon and returns it.
	failed chan error

	journal *journal.Journal
	fw      *firewalls
	grants  *grant.Manager
	runner  *command.Runner // the grant manager's; closed after it
	eng     *engine.Engine
	sup     *supervisor.Supervisor
	caps    *captures
	spa     *spaService
	rescue  *keeper
	fleet   *fleetMember
	attach  int // interfaces captured at start
	started time.Time
	// cleanStop is set by Run, before it stops the services, when the
	// stop was asked for (SIGTERM, SIGINT) rather than forced by a
	// failure; read by the stops, on Run's goroutine.
	cleanStop bool

	metrics *metrics.Metrics
	lat     *metrics.Latency
	ms      *metricsServer
	// reloads are reloads asked for over the control socket; the config
	// service's goroutine makes them, one at a time with SIGHUP's.
	reloads chan reloadRequest

	mu       sync.Mutex // guards cfg, cfgErr, host, reloadSt, trigger and repair
	cfg      *config.Config
	cfgErr   string
	host     []netip.Addr // what the engine was last given as the host's addresses
	reloadSt control.ReloadStatus
	trigger  string // what asked for the reload in progress ("" for a file change)
	repair   repairNote
}

// Run runs the daemon until ctx ends, then shuts down cleanly and
// returns nil. It returns an error when it cannot start, and the
// supervisor's escalation when a component keeps failing (the process
// should then exit non-zero so that systemd restarts it).
func Run(ctx context.Context, opts Options) error { return run(ctx, opts, osDeps()) }

func run(ctx context.Context, opts Options, dp deps) error {
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
	content, cfg, cfgErr, err := firstConfig(opts)
	if err != nil {
		return err
	}
	// What `sesame check` refuses, the start refuses, with the same
	// file:line. The daemon runs inside its unit's sandbox already, so
	// it does not model it (Sandbox nil); the state directory was
	// checked by firstConfig.
	rep := dp.preflight(ctx, cfg, preflight.Options{Interfaces: opts.Interfaces, LogFile: opts.LogFile, PidFile: opts.PidFile})
	if err := rep.Err(); err != nil {
		return err
	}
	log, err := eventlog.New(eventlog.Options{Name: "sesamed", Level: opts.Level, Stderr: opts.Stderr,
		LogFile: cfg.Options.LogFile, UseSyslog: cfg.Options.UseSyslog})
	if err != nil {
		// What the check could not foresee (a race, a full disk).
		return optionError(cfg, config.KeyLogFile, "-g", opts.LogFile, err)
	}
	defer log.Close()
	d := newDaemon(opts, dp, log, cfg, rep.Interfaces)
	d.reloadSt = control.ReloadStatus{At: d.started, Trigger: "start", OK: cfgErr == nil, InForce: d.started}
	if cfgErr != nil {
		d.reloadSt.Error = cfgErr.Error()
		d.cfgErr = cfgErr.Error() + " (running the last good config, " + lastGoodPath(opts.StateDir) + ")"
		log.Error("config invalid, running the last good config from "+lastGoodPath(opts.StateDir)+": "+cfgErr.Error(), "error", cfgErr, "last_good", lastGoodPath(opts.StateDir))
	}
	// The config's warnings, then the check's, then what the start picks
	// by itself (the default route's interfaces, the firewall auto finds).
	for _, w := range rep.Warnings {
		log.Warn(w)
	}
	for _, n := range rep.Notes {
		log.Info(n)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lc lifecycle
	lc.append(d.services(hup)...)
	if err := lc.start(ctx); err != nil {
		log.Error("cannot start", "error", err)
		return err
	}
	if cfgErr == nil {
		d.saveLastGood(content)
	}
	var serr error
	select {
	case <-ctx.Done():
		d.cleanStop = true
	case serr = <-d.failed:
		log.Error("a component keeps failing, exiting so the service manager restarts sesamed", "error", serr)
	}
	cancel()
	if err := lc.stop(context.Background()); err != nil {
		log.Error("stopping: "+err.Error(), "error", err)
	}
	return serr
}

// newDaemon builds the daemon for its first config, capturing on ifaces
// (preflight's Report.Interfaces); it starts nothing.
func newDaemon(opts Options, dp deps, log *eventlog.Logger, cfg *config.Config, ifaces []string) *daemon {
	d := &daemon{opts: opts, deps: dp, log: log, cfg: cfg, failed: make(chan error, 1),
		notify: supervisor.NewNotifier(log.Named("notify")), started: dp.now(), reloads: make(chan reloadRequest, 8)}
	// Counted from the first entry: resumed grants, the start's repairs.
	d.metrics = metrics.New(opts.Version)
	d.metrics.SetDoors(doorNames(cfg))
	log.RegisterSink(d.metrics.Sink())
	d.lat = d.metrics.NewLatency(commandLimit + time.Minute)
	d.ms = newMetricsServer(d.metrics, log.Named("metrics"))
	if dp.listenTCP != nil {
		d.ms.listen = dp.listenTCP
	}
	d.fw = &firewalls{log: log.Named("firewall"), newBackend: dp.newBackend}
	d.rescue = &keeper{log: log.Named("rescue"), newFW: dp.newRescueFW, fw: d.fw, now: dp.now}
	d.fleet = newFleetMember(d, log.Named("fleet"))
	d.caps = newCaptures(ifaces, log.Named("capture"))
	d.caps.openHandle = dp.openCapture
	d.spa = newSPA(log.Named("spa"), dp.now, opts.SkipIPv6)
	return d
}

// services is the daemon, in start order: each service starts once those
// before it run, and stops before them.
func (d *daemon) services(hup <-chan os.Signal) []hook {
	ctl := &controlService{d: d}
	return []hook{
		// The socket is taken first: a second sesamed fails here, before
		// it touches the journal or the firewall.
		ctl.listener(),
		d.journalService(),
		// The SPA files are read before the firewall, which guards the
		// ports they open.
		d.spa.loadService(d.config),
		d.fw.service(d.config, func() []knock.Port { return allGuarded(d.config(), d.spa.pendingFiles()) }),
		d.grantsService(),
		d.reconcileService(),
		// Before the engine: a grant of a Fleet door is shared from the
		// first knock; after the grants: it stops before them.
		d.fleet.service(),
		d.engineService(),
		d.supervisorService(),
		d.linksService(),
		d.spaRunService(),
		d.capturesService(),
		ctl.server(),
		d.ms.service(d.config, d.metricsState),
		d.configService(hup),
		d.pidFileService(),
		d.watchdogService(),
		// A healthy start closes a rescue port that a failure opened; a
		// clean stop disarms it. Before READY=1: once `systemctl start`
		// returns, the rescue is installed and closed (a start under load
		// let it race the admin's `sesame rescue status`).
		d.rescue.service(d.config, d.health, func() bool { return d.cleanStop }),
		d.readyService(),
		d.statusService(),
	}
}

// readyService says the daemon is up (knockd's line and READY=1) and, when
// it stops, that it is going down (STOPPING=1 and knockd's line).
// Readiness means serving what exists: an interface that is not there
// yet (or cannot be captured on) does not hold READY=1 back, which would
// hold back the units ordered after sesamed, maybe for good; it is
// named at warning here and shown as waiting in STATUS= until its
// capture starts.
func (d *daemon) readyService() hook {
	return hook{name: "ready", start: func(context.Context) error {
		ifaces := strings.Join(d.caps.ifaces, ",")
		d.log.Info("starting up, listening on "+ifaces, event.KeyKind, event.Start,
			"interfaces", ifaces, "attached", d.attach, "version", d.opts.Version)
		if w := d.caps.waiting(); len(w) > 0 {
			meanwhile := "until then sesamed serves the others"
			if d.attach == 0 {
				meanwhile = "until then no knock is seen"
			}
			d.log.Warn("ready without a capture on "+strings.Join(w, ", ")+
				": knocks there count once the interface appears or comes up; "+meanwhile,
				"waiting", len(w), "attached", d.attach)
		}
		d.notify.Ready()
		return nil
	}, stop: func(context.Context) error {
		d.notify.Stopping()
		d.log.Info("shutting down", event.KeyKind, event.Shutdown)
		return nil
	}}
}

// watchdogService pings systemd's watchdog while the daemon is healthy.
func (d *daemon) watchdogService() hook {
	var w worker
	return hook{name: "watchdog", start: func(ctx context.Context) error {
		wd := supervisor.NewWatchdog(d.notify, d.health(), d.log.Named("watchdog"))
		w.goRun(ctx, func(ctx context.Context) { wd.Run(ctx) })
		return nil
	}, stop: func(context.Context) error { w.stop(); return nil }}
}

// health is what the watchdog and the rescue's heartbeat consult.
func (d *daemon) health() health { return health{hb: d.sup.Heartbeats(), caps: d.caps} }

// doorNames are cfg's doors' names.
func doorNames(cfg *config.Config) []string {
	out := make([]string, len(cfg.Doors))
	for i, d := range cfg.Doors {
		out[i] = d.Name
	}
	return out
}

func (d *daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}
