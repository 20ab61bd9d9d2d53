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
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/eventlog"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/netmon"
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
	eng     *engine.Engine
	sup     *supervisor.Supervisor
	caps    *captures
	rescue  *keeper
	fleet   *fleetMember
	attach  int // interfaces captured at start

	mu     sync.Mutex // guards cfg, cfgErr and host
	cfg    *config.Config
	cfgErr string
	host   []netip.Addr // what the engine was last given as the host's addresses
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
	log, err := eventlog.New(eventlog.Options{Name: "sesamed", Level: opts.Level, Stderr: opts.Stderr,
		LogFile: cfg.Options.LogFile, UseSyslog: cfg.Options.UseSyslog})
	if err != nil {
		return err
	}
	defer log.Close()
	d := newDaemon(opts, dp, log, cfg)
	if cfgErr != nil {
		d.cfgErr = cfgErr.Error() + " (running the last good config, " + lastGoodPath(opts.StateDir) + ")"
		log.Error("config invalid, running the last good config from "+lastGoodPath(opts.StateDir)+": "+cfgErr.Error(), "error", cfgErr, "last_good", lastGoodPath(opts.StateDir))
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
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
	case serr = <-d.failed:
		log.Error("a component keeps failing, exiting so the service manager restarts sesamed", "error", serr)
	}
	cancel()
	if err := lc.stop(context.Background()); err != nil {
		log.Error("stopping: "+err.Error(), "error", err)
	}
	return serr
}

// newDaemon builds the daemon for its first config; it starts nothing.
func newDaemon(opts Options, dp deps, log *eventlog.Logger, cfg *config.Config) *daemon {
	d := &daemon{opts: opts, deps: dp, log: log, cfg: cfg, failed: make(chan error, 1),
		notify: supervisor.NewNotifier(log.Named("notify"))}
	d.fw = &firewalls{log: log.Named("firewall"), newBackend: dp.newBackend}
	d.rescue = &keeper{log: log.Named("rescue"), newFW: dp.newRescueFW, fw: d.fw, now: dp.now}
	d.fleet = newFleetMember(d, log.Named("fleet"))
	ifaces := opts.Interfaces
	if len(ifaces) == 0 {
		ifaces = cfg.Options.Interfaces
	}
	if len(ifaces) == 0 {
		ifaces = defaultInterfaces(log)
	}
	d.caps = newCaptures(ifaces, log.Named("capture"))
	d.caps.openHandle = dp.openCapture
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
		d.fw.service(d.config),
		d.grantsService(),
		d.reconcileService(),
		// Before the engine: a grant of a Fleet door is shared from the
		// first knock; after the grants: it stops before them.
		d.fleet.service(),
		d.engineService(),
		d.supervisorService(),
		d.linksService(),
		d.capturesService(),
		ctl.server(),
		d.configService(hup),
		d.pidFileService(),
		d.watchdogService(),
		d.readyService(),
		// A healthy start closes a rescue port that a failure opened.
		d.rescue.service(d.config, d.health),
		d.statusService(),
	}
}

// readyService says the daemon is up (knockd's line and READY=1) and, when
// it stops, that it is going down (STOPPING=1 and knockd's line).
func (d *daemon) readyService() hook {
	return hook{name: "ready", start: func(context.Context) error {
		ifaces := strings.Join(d.caps.ifaces, ",")
		d.log.Info("starting up, listening on "+ifaces, event.KeyKind, event.Start,
			"interfaces", ifaces, "attached", d.attach, "version", d.opts.Version)
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

func (d *daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}
