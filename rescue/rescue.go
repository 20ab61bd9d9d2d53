package rescue

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/knock"
)

// Firewall is the rescue's side in the kernel, in one firewall family:
// core/firewall's Rescue. Its changes are the Switch's only effects.
type Firewall interface {
	// Name is the firewall family; "" when no rescue port is configured.
	Name() string
	// Spec is what the rescue admits: ports sorted (none: off), sources
	// (none: anyone), how long a heartbeat lasts.
	Spec() (ports []knock.Port, from []netip.Prefix, after time.Duration)
	// State reads the kernel: problems says what is missing or different
	// (none: installed), held whether the hold marker is there, left the
	// least time left on the heartbeat.
	State(ctx context.Context) (problems []string, held bool, left time.Duration, err error)
	// Held reads only the hold marker.
	Held(ctx context.Context) (bool, error)
	// Install creates or repairs the objects, keeping the heartbeat and
	// the hold marker; a fresh install holds a heartbeat.
	Install(ctx context.Context) error
	// Refresh sets the heartbeat to last After from now.
	Refresh(ctx context.Context) error
	// Open sets the hold marker and drops the heartbeat; Close does the
	// reverse.
	Open(ctx context.Context) error
	Close(ctx context.Context) error
	// Remove deletes this family's objects; RemoveOthers every other
	// family's (all of them when off), returning what it removed.
	Remove(ctx context.Context) error
	RemoveOthers(ctx context.Context) ([]string, error)
}

// Switch is the rescue of one config: the policy that keeps, lets lapse,
// opens and closes the rescue its Firewall holds in the kernel. All
// methods may be called from any goroutine; kernel work is serialised.
type Switch struct {
	fw      Firewall
	ports   []knock.Port   // from fw.Spec, sorted
	from    []netip.Prefix // empty: anyone
	after   time.Duration
	enabled bool // a rescue port is configured
	log     hclog.Logger

	mu sync.Mutex // serialises kernel work and guards the fields below
	// open is the state last logged (rescue-open or rescue-close) or,
	// before any, the state first read from the kernel: a Switch made on
	// reload does not log again what its predecessor logged.
	open   bool
	seen   bool   // open has been set
	reason string // why it is open, when open

	// beat is when the last heartbeat refresh this Switch made began;
	// zero before one, and while the heartbeat is let lapse or held. A
	// refresh that ends more than After later may have come after the
	// kernel opened the rescue: Tick says so (rescue-late).
	beat time.Time
	now  func() time.Time // the clock of beat; tests set it

	// last is the Status of the last kernel reading, for Summary. It is
	// written under mu but read without it, so STATUS= updates never wait
	// for a kernel call (iptables can wait seconds for its lock).
	last atomic.Pointer[Status]
}

// New returns the Switch for the rescue fw holds. When fw has no ports the
// Switch is off: Install and Start then only remove what an earlier config
// left, Tick does nothing, Open and Close return ErrNotConfigured. It
// changes nothing in the kernel. A nil log discards; the rescue-open and
// rescue-close events go to log.
func New(fw Firewall, log hclog.Logger) *Switch {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ports, from, after := fw.Spec()
	s := &Switch{fw: fw, ports: ports, from: from, after: after, enabled: len(ports) > 0, log: log, now: time.Now}
	if s.enabled {
		st := s.status(kernelState{})
		s.last.Store(&st)
	}
	return s
}

// Enabled reports whether a rescue port is configured.
func (s *Switch) Enabled() bool { return s.enabled }

// Interval is how often to Tick: a third of After, so that one late or
// failed refresh does not open the rescue. 0 when off.
func (s *Switch) Interval() time.Duration { return s.after / 3 }

// Backend names the firewall family that holds the rescue; "" when off.
func (s *Switch) Backend() string {
	if !s.enabled {
		return ""
	}
	return s.fw.Name()
}

// kernelLocked reads the rescue's state from the kernel.
func (s *Switch) kernelLocked(ctx context.Context) (kernelState, error) {
	problems, held, left, err := s.fw.State(ctx)
	if err != nil {
		return kernelState{}, err
	}
	return kernelState{Installed: len(problems) == 0, Problems: problems, Held: held, Left: left}, nil
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
	removed, err := s.fw.RemoveOthers(ctx)
	for _, r := range removed {
		s.log.Info("removed a rescue this config does not use", "what", r)
	}
	if err != nil {
		s.log.Warn("could not remove a rescue this config does not use", "error", err)
	}
	if !s.enabled {
		return kernelState{}, nil
	}
	before, err := s.kernelLocked(ctx)
	if err != nil {
		return before, err
	}
	if before.Installed {
		s.noteLocked(before)
		return before, nil
	}
	if err := s.fw.Install(ctx); err != nil {
		return before, err
	}
	now, err := s.kernelLocked(ctx)
	if err != nil {
		return before, err
	}
	if arm && !now.Held && now.Left <= 0 {
		if err := s.fw.Refresh(ctx); err != nil {
			return before, err
		}
		now.Left = s.after
	}
	s.log.Info("rescue installed", "backend", s.fw.Name(), "ports", s.describe(), "after", s.after.String())
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

// Start is what the daemon calls once every component is up, at READY=1:
// install, release a hold left by `sesame rescue open` (the unit runs it
// after every failure), refresh the heartbeat. A rescue that was open is
// closed, loudly.
func (s *Switch) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, err := s.installLocked(ctx, false)
	if err != nil || !s.enabled {
		return err
	}
	arm := s.fw.Refresh
	if before.Held {
		arm = s.fw.Close
	}
	if _, err := s.beatLocked(ctx, arm); err != nil {
		return err
	}
	if before.isOpen() || before.Held || s.open {
		s.logCloseLocked("sesamed started and is healthy")
	}
	return s.readLocked(ctx)
}

// Tick is one heartbeat (Keep calls it every Interval): healthy says
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
	k, err := s.kernelLocked(ctx)
	if err != nil {
		return err
	}
	s.seedLocked(k)
	p := decide(k, healthy, s.open, why)
	if p.install {
		s.log.Warn("rescue objects were missing or damaged; reinstalling", "backend", s.fw.Name(), "problems", k.Problems)
		if err := s.fw.Install(ctx); err != nil {
			return err
		}
		// What the kernel holds now, without reading it again.
		k.Installed, k.Problems = true, nil
	}
	if !p.refresh {
		s.beat = time.Time{} // lapsing on purpose (unhealthy) or held
	}
	if p.refresh {
		gap, err := s.beatLocked(ctx, s.fw.Refresh)
		if err != nil {
			return err
		}
		if gap > s.after {
			// The kernel ends a heartbeat After from when its refresh
			// committed, at or after the last one began; this one
			// committed at the latest now. The read above may have come
			// too early to see a lapse in between; when it saw one,
			// rescue-close says so too, and this says why.
			s.log.Warn(fmt.Sprintf("rescue heartbeat late: this refresh ended %v after the previous one began, more than Rescue_After (%v): %s may have been reachable meanwhile (a stalled machine or a slow firewall tool)",
				gap.Round(time.Millisecond), s.after, s.describe()),
				event.Event{Kind: event.RescueLate}.Args("ports", knock.FormatSequence(s.ports), "backend", s.fw.Name(), "gap", gap.String())...)
		}
		k.Left = s.after
		// `sesame rescue open` may have set the hold between the read
		// above and the refresh: look again, and open it again if so.
		// Either order of the two writers ends with the rescue open.
		held, err := s.fw.Held(ctx)
		if err != nil {
			return err
		}
		if held {
			if err := s.fw.Open(ctx); err != nil {
				return err
			}
			k.Held, k.Left = true, 0
			s.beat = time.Time{}
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

// Keep is the heartbeat: until ctx ends it Ticks the Switch current
// returns every Interval, asking healthy each time (ok false, with why,
// when a component is not). current is asked again before each tick, so
// a Switch a config reload swapped in is the one kept; while there is
// none, or it is off, Keep looks again every second. A failed tick is
// logged; the heartbeat it did not refresh lapses and the rescue opens,
// which is the point.
func Keep(ctx context.Context, current func() *Switch, healthy func() (ok bool, why string)) {
	for {
		wait := time.Second
		if s := current(); s != nil && s.enabled {
			wait = s.Interval()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s := current()
		if s == nil || !s.enabled {
			continue
		}
		ok, why := healthy()
		if err := s.Tick(ctx, ok, why); err != nil && ctx.Err() == nil {
			s.log.Error("rescue heartbeat failed; the rescue opens if this persists", "error", err)
		}
	}
}

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
	if err := s.fw.Open(ctx); err != nil {
		return err
	}
	s.beat = time.Time{}
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
	if _, err := s.beatLocked(ctx, s.fw.Close); err != nil {
		return err
	}
	if before.isOpen() || before.Held || !before.Installed || s.open {
		s.logCloseLocked("closed by an admin: sesame rescue close")
	} else {
		s.log.Info("rescue already closed; heartbeat refreshed", "ports", s.describe())
	}
	return s.readLocked(ctx)
}

// beatLocked runs arm, which puts the heartbeat back (Refresh, or Close
// when it also releases a hold), and records when it began in beat.
// gap is how long after the previous one began this one ended; zero
// when there was none to measure from (the first, or after a lapse on
// purpose or a hold).
func (s *Switch) beatLocked(ctx context.Context, arm func(context.Context) error) (gap time.Duration, err error) {
	began := s.now()
	if err := arm(ctx); err != nil {
		return 0, err
	}
	if !s.beat.IsZero() {
		gap = s.now().Sub(s.beat)
	}
	s.beat = began
	return gap, nil
}

func (s *Switch) logOpenLocked(reason string) {
	s.open, s.reason, s.seen = true, reason, true
	s.log.Warn("rescue port open: "+s.describe()+" reachable ("+reason+")",
		event.Event{Kind: event.RescueOpen}.Args("ports", knock.FormatSequence(s.ports), "from", s.fromString(),
			"backend", s.fw.Name(), "reason", reason)...)
}

func (s *Switch) logCloseLocked(reason string) {
	s.open, s.reason, s.seen = false, "", true
	s.log.Warn("rescue port closed: "+s.describe()+" ("+reason+")",
		event.Event{Kind: event.RescueClose}.Args("ports", knock.FormatSequence(s.ports), "from", s.fromString(),
			"backend", s.fw.Name(), "reason", reason)...)
}

// describe is the rescue in a few words for logs: ports, and sources when
// narrowed.
func (s *Switch) describe() string {
	if len(s.from) == 0 {
		return knock.FormatSequence(s.ports)
	}
	return knock.FormatSequence(s.ports) + " from " + s.fromString()
}

func (s *Switch) fromString() string {
	if len(s.from) == 0 {
		return "any"
	}
	from := make([]string, len(s.from))
	for i, p := range s.from {
		from[i] = p.String()
	}
	return strings.Join(from, ",")
}

// readLocked refreshes last from the kernel.
func (s *Switch) readLocked(ctx context.Context) error {
	k, err := s.kernelLocked(ctx)
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

// Last is the Status of the last kernel reading, like Summary: the zero
// Status when no rescue is configured.
func (s *Switch) Last() Status {
	if !s.enabled {
		return Status{}
	}
	return *s.last.Load()
}

func (s *Switch) status(k kernelState) Status {
	st := Status{Configured: true, Backend: s.fw.Name(), Ports: s.ports, From: s.from, After: s.after,
		Installed: k.Installed, Problems: k.Problems, Open: k.isOpen(), Held: k.Held, Left: k.Left}
	if st.Open && s.open {
		st.Reason = s.reason
	}
	return st
}

// Disarm is what the daemon calls when it stops cleanly (`systemctl
// stop`, SIGTERM): a planned stop must not open the rescue ports to
// everyone Rescue_After later, and a failure does not come this way (a
// crash or a failed stop leaves the heartbeat to lapse, and the unit's
// `sesame rescue open --if-failed` opens it at once). Unless an admin
// holds the rescue open, Disarm removes this family's objects, so
// nothing is left to lapse: the rescue ports are as the admin's own rules
// make them until the next Start installs it again (closed). A held
// rescue stays open. Either way it says at warning what stays, and logs
// rescue-close when a rescue that was open (the daemon was unhealthy)
// closes. An off Switch does nothing. The caller stops Keep first.
func (s *Switch) Disarm(ctx context.Context) error {
	if !s.enabled {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.kernelLocked(ctx)
	if err != nil {
		return err
	}
	s.seedLocked(k)
	if k.Held {
		s.noteLocked(k)
		s.log.Warn("rescue port "+s.describe()+" stays open while sesamed is stopped: an admin holds it open (sesame rescue close closes it)",
			"ports", knock.FormatSequence(s.ports), "backend", s.fw.Name())
		return nil
	}
	if err := s.fw.Remove(ctx); err != nil {
		return err
	}
	if s.open || k.isOpen() {
		s.logCloseLocked("disarmed: sesamed stopped cleanly")
	}
	s.noteLocked(kernelState{Problems: []string{"removed by a clean stop"}})
	s.log.Warn("rescue disarmed: sesamed stopped cleanly, so "+s.describe()+" does not open while it is stopped (a crash or a failed stop still opens it; sesame rescue open opens it by hand)",
		"ports", knock.FormatSequence(s.ports), "backend", s.fw.Name())
	return nil
}

// Remove deletes the rescue from the kernel (every family), for
// uninstalling. The grants backend's objects are left alone.
func (s *Switch) Remove(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.enabled {
		err = s.fw.Remove(ctx)
	}
	removed, serr := s.fw.RemoveOthers(ctx)
	for _, r := range removed {
		s.log.Info("removed rescue objects", "what", r)
	}
	if err == nil {
		err = serr
	}
	if err == nil && s.enabled {
		s.log.Info("rescue removed", "backend", s.fw.Name())
	}
	return err
}

// OpenInstalled holds open, through open (core/firewall's OpenRescues),
// every rescue installed in the kernel, in any family, with the ports the
// kernel holds: what `sesame rescue open` does when it cannot read the
// config (a daemon that failed on a broken config still gets its rescue
// opened). It returns what it opened, and logs each as rescue-open;
// nothing installed is not an error.
func OpenInstalled(ctx context.Context, open func(context.Context) ([]string, error), reason string, log hclog.Logger) ([]string, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	opened, err := open(ctx)
	for _, o := range opened {
		log.Warn("rescue port open: "+o+" ("+reason+")", event.Event{Kind: event.RescueOpen}.Args("ports", o, "reason", reason)...)
	}
	if err != nil {
		return opened, fmt.Errorf("rescue: open installed rescues: %w", err)
	}
	return opened, nil
}
