package failsafe

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
)

// Options configure a Switch; FromConfig fills them from [options].
type Options struct {
	// Kind is the firewall family, as for firewall.New; Auto runs
	// firewall.Detect. Pass the grants backend's resolved kind when there
	// is one, so both always agree.
	Kind firewall.Kind
	// Ports are Rescue_Ports; none means the rescue is off.
	Ports []knock.Port
	// After is Rescue_After: how long after the last heartbeat the
	// rescue opens. At least MinAfter.
	After time.Duration
	// From is Rescue_From: who may use the rescue; empty means anyone.
	From []netip.Prefix
	// Logger receives the rescue-open/rescue-close events; nil discards.
	Logger hclog.Logger
}

// FromConfig returns the rescue options of a parsed config.
func FromConfig(o config.Options, log hclog.Logger) (Options, error) {
	kind, err := firewall.ParseKind(o.Firewall)
	if err != nil {
		return Options{}, fmt.Errorf("failsafe: %w", err)
	}
	return Options{Kind: kind, Ports: o.RescuePorts, After: o.RescueAfter, From: o.RescueFrom, Logger: log}, nil
}

// Event values for the "event" log key (core/eventlog sends them to
// journald as SESAME_EVENT, at priority warning or higher).
const (
	EventOpen  = "rescue-open"
	EventClose = "rescue-close"
)

// sweeper removes rescue objects from firewall families other than the
// Switch's own (all of them when the rescue is off), so that a rescue
// left by an earlier config never opens on its own. It returns what it
// removed, for the log.
type sweeper func(ctx context.Context) ([]string, error)

// Switch is the rescue of one config. All methods may be called from any
// goroutine; kernel work is serialised.
type Switch struct {
	spec    spec
	enabled bool
	gate    gate // nil when not enabled
	sweep   sweeper
	log     hclog.Logger

	mu sync.Mutex // serialises kernel work and guards the fields below
	// open is the state last logged (rescue-open or rescue-close) or,
	// before any, the state first read from the kernel: a Switch made on
	// reload does not log again what its predecessor logged.
	open   bool
	seen   bool   // open has been set
	reason string // why it is open, when open

	// last is the Status of the last kernel reading, for Summary. It is
	// written under mu but read without it, so STATUS= updates never wait
	// for a kernel call (iptables can wait seconds for its lock).
	last atomic.Pointer[Status]
}

// detect resolves firewall.Auto; tests replace it.
var detect = firewall.Detect

// detectTimeout bounds Detect, as firewall.New does.
const detectTimeout = 30 * time.Second

// New validates opts and picks the firewall family. With no Ports it
// returns a Switch that is off: Install and Start then only remove what
// an earlier config left, Tick does nothing, Open and Close return
// ErrNotConfigured. It changes nothing in the kernel.
func New(opts Options) (*Switch, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if len(opts.Ports) == 0 {
		return &Switch{log: log, sweep: sweepAll(log)}, nil
	}
	s, err := newSpec(opts)
	if err != nil {
		return nil, fmt.Errorf("failsafe: %w", err)
	}
	kind := opts.Kind
	if kind == firewall.Auto {
		ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
		defer cancel()
		k, detail, err := detect(ctx)
		if err != nil {
			return nil, fmt.Errorf("failsafe: %w", err)
		}
		log.Debug("rescue firewall detected", "backend", k.String(), "detail", detail)
		kind = k
	}
	g, sw, err := newGate(kind, s, log)
	if err != nil {
		return nil, fmt.Errorf("failsafe: %v: %w", kind, err)
	}
	return newSwitch(s, g, sw, log), nil
}

func newSwitch(s spec, g gate, sw sweeper, log hclog.Logger) *Switch {
	sc := &Switch{spec: s, enabled: true, gate: g, sweep: sw, log: log}
	st := sc.status(kernelState{})
	sc.last.Store(&st)
	return sc
}

// Enabled reports whether a rescue port is configured.
func (s *Switch) Enabled() bool { return s.enabled }

// Interval is how often to call Tick or Heartbeat: a third of After, so
// that one late or failed refresh does not open the rescue. 0 when off.
func (s *Switch) Interval() time.Duration { return s.spec.After / 3 }

// Backend names the firewall family that holds the rescue; "" when off.
func (s *Switch) Backend() string {
	if !s.enabled {
		return ""
	}
	return s.gate.Name()
}

// Install applies the config: it removes rescue objects from other
// families (all of them when off), then creates or repairs this one's,
// keeping the heartbeat and the hold marker. Objects it had to create
// start with a heartbeat, unless held, so a reload that adds a rescue
// does not open it. Call it at start (Start does) and after every config
// reload, with the new config's Switch.
func (s *Switch) Install(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.installLocked(ctx, true)
	return err
}

// installLocked sweeps other families and installs this one's objects;
// it returns the state before. With arm, objects it created get a
// heartbeat.
func (s *Switch) installLocked(ctx context.Context, arm bool) (kernelState, error) {
	removed, err := s.sweep(ctx)
	for _, r := range removed {
		s.log.Info("removed a rescue this config does not use", "what", r)
	}
	if err != nil {
		s.log.Warn("could not remove a rescue this config does not use", "error", err)
	}
	if !s.enabled {
		return kernelState{}, nil
	}
	before, err := s.gate.State(ctx)
	if err != nil {
		return before, err
	}
	if before.Installed {
		s.noteLocked(before)
		return before, nil
	}
	if err := s.gate.Install(ctx); err != nil {
		return before, err
	}
	now, err := s.gate.State(ctx)
	if err != nil {
		return before, err
	}
	if arm && !now.Held && now.Left <= 0 {
		if err := s.gate.Refresh(ctx); err != nil {
			return before, err
		}
		now.Left = s.spec.After
	}
	s.log.Info("rescue installed", "backend", s.gate.Name(), "ports", s.spec.describe(), "after", s.spec.After.String())
	// New objects without a heartbeat are open only until the caller
	// (Start, Open, Close) sets the state it wants: nothing to log yet.
	s.seen, s.open = true, false
	s.noteLocked(now)
	return before, nil
}

// noteLocked records a kernel reading: the open state it implies, when
// nothing was logged yet, and the Status for Summary.
func (s *Switch) noteLocked(k kernelState) {
	s.seedLocked(k)
	st := s.status(k)
	s.last.Store(&st)
}

func (s *Switch) seedLocked(k kernelState) {
	if !s.seen {
		s.seen = true
		s.open = k.isOpen() || (k.Installed && k.Held)
	}
}

// Start is what the supervisor calls once every component is up, at
// READY=1: install, release a hold left by `sesame rescue open` (the unit
// runs it after every failure), refresh the heartbeat. A rescue that was
// open is closed, loudly.
func (s *Switch) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, err := s.installLocked(ctx, false)
	if err != nil || !s.enabled {
		return err
	}
	if before.Held {
		if err := s.gate.SetHold(ctx, false); err != nil {
			return err
		}
	}
	if err := s.gate.Refresh(ctx); err != nil {
		return err
	}
	if before.isOpen() || before.Held || s.open {
		s.logCloseLocked("sesamed started and is healthy")
	}
	return s.readLocked(ctx)
}

// Tick is the supervisor's heartbeat, every Interval: healthy says
// whether every component is healthy, why names the one that is not.
// While healthy it refreshes the heartbeat (unless an admin holds the
// rescue open); while not, it lets the heartbeat lapse, and the kernel
// opens the rescue After the last refresh. It logs rescue-open once the
// rescue is open and rescue-close when a refresh closes it. Missing
// objects (a flushed firewall) are put back.
func (s *Switch) Tick(ctx context.Context, healthy bool, why string) error {
	if !s.enabled {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.gate.State(ctx)
	if err != nil {
		return err
	}
	s.seedLocked(k)
	p := decide(k, healthy, s.open, why)
	if p.install {
		s.log.Warn("rescue objects were missing or damaged; reinstalling", "backend", s.gate.Name(), "problems", k.Problems)
		if err := s.gate.Install(ctx); err != nil {
			return err
		}
	}
	// What the kernel holds after this tick, without reading it again.
	if p.install {
		k.Installed, k.Problems = true, nil
	}
	if p.refresh {
		if err := s.gate.Refresh(ctx); err != nil {
			return err
		}
		k.Left = s.spec.After
		// `sesame rescue open` may have set the hold between the read
		// above and the refresh: look again, and undo the refresh if so.
		// Either order of the two writers ends with the rescue open.
		held, err := s.gate.Held(ctx)
		if err != nil {
			return err
		}
		if held {
			if err := s.gate.Drop(ctx); err != nil {
				return err
			}
			k.Held, k.Left = true, 0
			p.logClose = ""
			if !s.open {
				p.logOpen = reasonHeld
			}
		}
	}
	if p.logOpen != "" {
		s.logOpenLocked(p.logOpen)
	}
	if p.logClose != "" {
		s.logCloseLocked(p.logClose)
	}
	s.noteLocked(k)
	return nil
}

// Keep calls Tick every Interval until ctx ends, asking healthy each
// time (ok false, with why, when a component is not healthy). A failed
// tick is logged; the heartbeat it did not refresh lapses and the rescue
// opens, which is the point. A Switch that is off returns at once.
func (s *Switch) Keep(ctx context.Context, healthy func() (ok bool, why string)) {
	if !s.enabled {
		return
	}
	t := time.NewTicker(s.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ok, why := healthy()
			if err := s.Tick(ctx, ok, why); err != nil && ctx.Err() == nil {
				s.log.Error("rescue heartbeat failed; the rescue opens if this persists", "error", err)
			}
		}
	}
}

// Heartbeat is Tick(ctx, true, "").
func (s *Switch) Heartbeat(ctx context.Context) error { return s.Tick(ctx, true, "") }

// Open opens the rescue now and holds it open: the heartbeat is removed
// and the daemon stops refreshing it until Close or its next Start.
// reason is logged ("" means an admin asked).
func (s *Switch) Open(ctx context.Context, reason string) error {
	if !s.enabled {
		return ErrNotConfigured
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.installLocked(ctx, false); err != nil {
		return err
	}
	if err := s.gate.SetHold(ctx, true); err != nil {
		return err
	}
	if err := s.gate.Drop(ctx); err != nil {
		return err
	}
	if reason == "" {
		reason = reasonHeld
	}
	s.logOpenLocked(reason)
	return s.readLocked(ctx)
}

// Close releases a hold and puts the heartbeat back: the rescue closes
// now. If no daemon refreshes it, it opens again After from now.
func (s *Switch) Close(ctx context.Context) error {
	if !s.enabled {
		return ErrNotConfigured
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before, err := s.installLocked(ctx, false)
	if err != nil {
		return err
	}
	if err := s.gate.SetHold(ctx, false); err != nil {
		return err
	}
	if err := s.gate.Refresh(ctx); err != nil {
		return err
	}
	if before.isOpen() || before.Held || !before.Installed || s.open {
		s.logCloseLocked("closed by an admin: sesame rescue close")
	} else {
		s.log.Info("rescue already closed; heartbeat refreshed", "ports", s.spec.describe())
	}
	return s.readLocked(ctx)
}

func (s *Switch) logOpenLocked(reason string) {
	s.open, s.reason, s.seen = true, reason, true
	s.log.Warn("rescue port open: "+s.spec.describe()+" reachable ("+reason+")",
		"event", EventOpen, "ports", knock.FormatSequence(s.spec.Ports), "from", s.fromString(),
		"backend", s.gate.Name(), "reason", reason)
}

func (s *Switch) logCloseLocked(reason string) {
	s.open, s.reason, s.seen = false, "", true
	s.log.Warn("rescue port closed: "+s.spec.describe()+" ("+reason+")",
		"event", EventClose, "ports", knock.FormatSequence(s.spec.Ports), "from", s.fromString(),
		"backend", s.gate.Name(), "reason", reason)
}

func (s *Switch) fromString() string {
	if s.spec.AnyFrom {
		return "any"
	}
	var from []string
	for _, p := range append(slices.Clone(s.spec.From4), s.spec.From6...) {
		from = append(from, p.String())
	}
	return strings.Join(from, ",")
}

// readLocked refreshes last from the kernel.
func (s *Switch) readLocked(ctx context.Context) error {
	k, err := s.gate.State(ctx)
	if err != nil {
		return err
	}
	s.noteLocked(k)
	return nil
}

// Status reads the rescue's state from the kernel.
func (s *Switch) Status(ctx context.Context) (Status, error) {
	if !s.enabled {
		return Status{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readLocked(ctx); err != nil {
		return Status{}, err
	}
	return *s.last.Load(), nil
}

// Summary is the Status of the last kernel reading (Start, Tick, Open,
// Close or Status), without asking the kernel: cheap enough for every
// STATUS= update.
func (s *Switch) Summary() string {
	if !s.enabled {
		return Status{}.String()
	}
	return s.last.Load().String()
}

func (s *Switch) status(k kernelState) Status {
	st := Status{Configured: true, Backend: s.gate.Name(), Ports: s.spec.Ports, After: s.spec.After,
		Installed: k.Installed, Problems: k.Problems, Open: k.isOpen(), Held: k.Held, Left: k.Left}
	if !s.spec.AnyFrom {
		st.From = append(slices.Clone(s.spec.From4), s.spec.From6...)
	}
	if st.Open && s.open {
		st.Reason = s.reason
	}
	return st
}

// Remove deletes the rescue from the kernel (every family), for
// uninstalling. The grants backend's objects are left alone.
func (s *Switch) Remove(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.enabled {
		err = s.gate.Remove(ctx)
	}
	removed, serr := s.sweep(ctx)
	for _, r := range removed {
		s.log.Info("removed rescue objects", "what", r)
	}
	if err == nil {
		err = serr
	}
	if err == nil && s.enabled {
		s.log.Info("rescue removed", "backend", s.gate.Name())
	}
	return err
}

// OpenInstalled holds open every rescue installed in the kernel, in any
// family, with the ports the kernel holds: what `sesame rescue open` does
// when it cannot read the config (a daemon that failed on a broken config
// still gets its rescue opened). It returns what it opened, and logs each
// as rescue-open; nothing installed is not an error.
func OpenInstalled(ctx context.Context, reason string, log hclog.Logger) ([]string, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	opened, err := openInstalled(ctx)
	for _, o := range opened {
		log.Warn("rescue port open: "+o+" ("+reason+")", "event", EventOpen, "ports", o, "reason", reason)
	}
	if err != nil {
		return opened, fmt.Errorf("failsafe: open installed rescues: %w", err)
	}
	return opened, nil
}
