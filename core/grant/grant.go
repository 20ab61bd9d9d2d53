// Package grant owns the lifecycle of what an opened door gives a knocker:
// a grant per (door, source) that is journaled, applied (native firewall
// access and/or the door's start command), extended by a repeat knock
// instead of applied twice, and revoked at its deadline (stop command
// and/or native revoke), durably recorded, retried until the stop
// succeeds, and resumed after a restart. It decides when commands run;
// package command runs them and package firewall applies native rules.
//
// # Journal first, or journal beside the kernel
//
// A grant with a start command is durable in the journal before the
// command runs: a command's effect has no deadline of its own, so only
// the record lets a restart run its stop. A grant that only opens ports
// natively, through a Firewall whose grants lapse in the kernel at their
// deadline (KernelExpiry: nftables element timeouts, iptables' time
// match), is applied while its record is being written: a crash before
// the record is durable leaves a kernel grant that ends at the grant's
// own deadline (the deadline the kernel is given is the record's, never
// later), which the restart's Reconcile removes sooner as unwanted. If
// the write fails, the grant is refused and its native grant revoked at
// once. SPA grants carrying a replay digest stay journal-first, so that
// a replayed packet never has an effect its digest was not durable for.
package grant

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/loglimit"
)

// Journal is the durable record of grants (package journal).
type Journal interface {
	Grant(r journal.Record) error
	Extend(id string, deadline time.Time) error
	Started(id string, at, deadline time.Time) error
	Revoking(id string) error
	Revoked(id string, at time.Time) error
	Forgotten(id string, at time.Time) error
	Replay(r journal.Replay) error
}

// Firewall applies native grants (package firewall's backends).
type Firewall interface {
	Name() string
	Grant(ctx context.Context, g firewall.Grant, now time.Time) error
	Revoke(ctx context.Context, g firewall.Grant) error
}

// KernelExpiry is implemented by a Firewall whose grants lapse in the
// kernel at their deadline even when Sesame is not running (nftables
// element timeouts, iptables' time match). The Manager then applies a
// native-only grant while its journal record is being written instead of
// after (see the package doc).
type KernelExpiry interface {
	ExpiresInKernel() bool
}

// Commands runs door commands (package command).
type Commands interface {
	Allow(door string, now time.Time) bool
	Run(ctx context.Context, door, cmd string, env ...string) command.Result
	RunMarked(ctx context.Context, door, cmd, marker string, env ...string) command.Result
}

// Marks reads what Commands.RunMarked left behind (package command's
// marker protocol).
type Marks interface {
	ReadMark(marker string) command.Mark
	WaitMark(ctx context.Context, marker string, until time.Time) command.Mark
	RemoveMark(marker string)
}

// Clock is time as the manager sees it; tests replace it. Now must carry
// a monotonic reading (time.Now's does): deadlines are enforced on it, so
// a step of the wall clock does not move them.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled call that can be cancelled.
type Timer interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// MaxRetryDelay caps the delay between two attempts of a failing stop
// command, native revoke or journal write.
const MaxRetryDelay = 30 * time.Second

// Options configure a Manager. Commands is required; Journal and
// Firewall may be nil (no durability; no native grants until
// SetFirewall).
type Options struct {
	Journal  Journal
	Firewall Firewall
	Commands Commands
	// Marks reads command markers; nil means package command's.
	Marks Marks
	// MarkerDir receives the markers of start and stop commands (see
	// command.RunMarked), so that after a crash a start that is still
	// running is waited for, a finished one dates its grant's deadline,
	// and a stop that finished is not run again. Empty disables markers:
	// a resumed grant whose start had not been journaled as finished is
	// then given its full timeout from the restart, and an interrupted
	// stop reruns.
	MarkerDir string
	// CommandLimit is how long a command may run (command's Timeout; default
	// 2 min). A start command that outlived a killed daemon is waited
	// for until its grant's start plus CommandLimit, then killed.
	CommandLimit time.Duration
	Logger       hclog.Logger
	Clock        Clock
	// RetryBase is the first delay before a failed stop, native revoke or
	// journal write is retried; it doubles per attempt up to RetryMax
	// (default and at most MaxRetryDelay). Retries never stop: a
	// revocation is recorded only when the stop succeeded (or an admin
	// forgot the grant).
	RetryBase time.Duration
	RetryMax  time.Duration
	// ExtendEvery is the least time between two journal writes (and
	// native firewall updates) for one grant's extensions (default 1 s;
	// a quarter of the grant's timeout when that is longer, at most half
	// of it); the extensions in between are coalesced, the latest
	// deadline wins.
	ExtendEvery time.Duration
	// LogEvery is how often held-back extension and refusal lines are
	// summarised (default 10 s).
	LogEvery time.Duration
	// Sharer, when set, shares grants with a fleet (see Sharer).
	Sharer Sharer
}

// State is where a grant is in its life.
type State int

const (
	Starting    State = iota // journaled; being applied (or a resumed start being waited for)
	Active                   // applied; revoked at its deadline
	Revoking                 // its stop command or native revoke is running
	StopFailing              // its stop or native revoke failed; retried until it succeeds
	Unrecorded               // revoked, but the journal could not record it yet; retried
)

func (s State) String() string {
	return [...]string{"starting", "active", "revoking", "stop failing", "revoked, not journaled"}[s]
}

// Grant is a read-only view of a grant, for `sesame grants`.
type Grant struct {
	ID       string       `json:"id"`
	Door     string       `json:"door"`
	Source   netip.Addr   `json:"source"`
	Open     []knock.Port `json:"-"`
	Ports    string       `json:"ports,omitempty"`
	StopCmd  string       `json:"stop_command,omitempty"`
	Start    time.Time    `json:"start"`
	Deadline time.Time    `json:"deadline"`
	State    string       `json:"state"`
	// Auth, User and Key say who asked for an SPA grant, and how (see
	// Auth); empty for knocks.
	Auth string `json:"auth,omitempty"`
	User string `json:"user,omitempty"`
	Key  string `json:"key,omitempty"`
	// Origin is the fleet node a grant received from the group was made
	// on; Shared the door name under which a grant made here is shared
	// with the group (see Sharer). Both are empty for local grants.
	Origin string `json:"origin,omitempty"`
	Shared string `json:"shared,omitempty"`
	// Attempts and LastError describe a failing stop (StopFailing) or
	// journal write (Unrecorded).
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// StartError says how the start command failed ("exit status 127:
	// sh: 1: iptablesx: not found"); the grant still ends at its
	// deadline with its stop command, as knockd's would.
	StartError string `json:"start_error,omitempty"`
}

// key is a grant's identity: one per door and source for knocks; for
// SPA grants, scope adds the key and the ports asked for (see Request).
type key struct {
	door  string
	src   netip.Addr
	scope string
}

// keyOf is the identity of the grant r records. A grant received from a
// fleet is its own, by its id: a local knock never extends it, nor does
// it extend a local grant of the same door and source.
func keyOf(r *journal.Record) key {
	k := key{door: r.Door, src: r.Source}
	if r.Origin != "" {
		k.scope = "fleet\x00" + r.ID
		return k
	}
	if r.Auth != "" {
		k.scope = r.Key + " " + knock.FormatSequence(sortedPorts(r.Open))
	}
	return k
}

func sortedPorts(ps []knock.Port) []knock.Port {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b knock.Port) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Num) - int(b.Num)
	})
	return slices.Compact(out)
}

// entry is one grant. rec's fields other than Deadline and StartPending,
// and the fields not marked otherwise, are fixed once the entry is
// published.
type entry struct {
	k        key            // keyOf(&rec)
	rec      journal.Record // rec.Deadline, rec.StartPending: guarded by Manager.mu
	startCmd string
	// startKnown: startCmd is the start command the grant ran (false for
	// resumed grants: the journal does not keep start commands).
	startKnown bool
	// after, when not nil, is closed when the grant this one replaces has
	// settled (a re-knock after a reload changed the door's commands).
	after <-chan struct{}
	// interrupted: resumed from a journal whose Revoking had no Revoked.
	interrupted bool
	// absolute: the deadline was given (a fleet grant's origin set it);
	// the end of a start command does not move it.
	absolute bool
	// journaled is closed once the grant's record is durable, or the
	// grant was refused (see Manager.Journaled).
	journaled chan struct{}

	// Guarded by Manager.mu.
	timeout   time.Duration // the door's grant timeout; bounds every deadline
	state     State
	timer     Timer
	gen       uint64    // bumped by every (re)schedule; a timer acts only for its own
	extendTo  time.Time // a knock while Starting
	revokeNow bool      // revoke as soon as it is applied (admin, or a reload's re-knock)
	revokeWhy string
	noStop    bool   // the start command never ran: nothing for the stop to undo
	startErr  string // how the start command failed; "" when it did not
	// Extension writes: persisting while a writer owns them; persisted is
	// the deadline the journal holds; lastWrite when the writer last wrote.
	persisting bool
	persisted  time.Time
	lastWrite  time.Time
	// A failing revocation.
	attempts  int
	lastErr   string
	forget    bool          // an admin asked to forget it (sesame revoke --forget)
	poke      chan struct{} // cuts a retry wait short (buffered, 1)
	settled   chan struct{} // closed when the revocation finished or first failed
	isSettled bool
	// isJournaled: journaled was closed.
	isJournaled bool
	done        chan struct{} // closed when the grant left the manager
}

func newEntry(r journal.Record, timeout time.Duration) *entry {
	return &entry{k: keyOf(&r), rec: r, timeout: timeout, poke: make(chan struct{}, 1),
		settled: make(chan struct{}), done: make(chan struct{}), journaled: make(chan struct{})}
}

// Manager holds the live grants. Open is called by the engine goroutine
// and returns without blocking on I/O; journal writes, commands and
// firewall calls run on goroutines the Manager tracks and Close waits for.
//
// Memory is bounded under any flood of knocks: a grant costs one entry
// (well under 1 KiB with its record) and, only while its deadline is
// being written, one goroutine; repeat knocks add nothing (their
// extensions are coalesced: at most one journal write and one firewall
// update in flight per grant, at most one per second or quarter of its
// timeout, the latest deadline wins). New grants per door are rate limited (Commands.Allow
// for doors with commands, NativeRate/NativeBurst for native-only doors),
// so a door holds at most burst + rate × its timeout grants; log lines a
// flood multiplies are summarised by an loglimit.Limiter with a bounded
// key set.
type Manager struct {
	opts   Options
	log    hclog.Logger
	clock  Clock
	marks  Marks
	lines  *loglimit.Limiter
	fw     atomic.Pointer[firewallRef] // nil until there is a firewall; then fixed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Lock order: fwMu, then mu. fwMu serialises native firewall changes
	// with Reconcile, which must not see a grant applied after it took its
	// snapshot of what is wanted (it would remove it as stale); it is held
	// across the firewall call and takes mu only to read the entry, and it
	// is never taken while holding mu. Under mu the Manager calls only
	// what takes no lock of its own in return: lines and native (the
	// limiters' internal locks) and Commands.Allow. Journal writes,
	// commands and firewall calls are made without mu.
	fwMu sync.Mutex

	mu     sync.Mutex // guards byKey, byID, closed, native, and the fields of entries marked so
	byKey  map[key]*entry
	byID   map[string]*entry
	closed bool
	// native limits opens of doors that only grant natively, per door.
	native map[string]*rate.Limiter
	// unrecorded are the grants whose revocation the journal has not
	// taken yet; a journal write that succeeds retries them at once.
	unrecorded map[*entry]bool
}

// firewallRef holds the Manager's Firewall.
type firewallRef struct{ Firewall }

// firewall returns the firewall of native grants; nil when none.
func (m *Manager) firewall() Firewall {
	if r := m.fw.Load(); r != nil {
		return r.Firewall
	}
	return nil
}

// SetFirewall gives a Manager made without a firewall one for native
// grants (a reload added the first door with Open), and reports whether
// it did: once there is a firewall it stays, since the grants made
// through it are revoked through it.
func (m *Manager) SetFirewall(fw Firewall) bool {
	return fw != nil && m.fw.CompareAndSwap(nil, &firewallRef{fw})
}

// Native-only doors may open NativeRate grants per second, in bursts of
// NativeBurst; doors with commands are limited by Commands.Allow.
const (
	NativeRate  = 100
	NativeBurst = 200
)

func (m *Manager) nativeLimit(door string) *rate.Limiter {
	l := m.native[door]
	if l == nil {
		l = rate.NewLimiter(NativeRate, NativeBurst)
		m.native[door] = l
	}
	return l
}

// New returns a Manager.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Marks == nil {
		opts.Marks = command.Marks{}
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 || opts.RetryMax > MaxRetryDelay {
		opts.RetryMax = MaxRetryDelay
	}
	if opts.CommandLimit <= 0 {
		opts.CommandLimit = 2 * time.Minute
	}
	if opts.ExtendEvery <= 0 {
		opts.ExtendEvery = time.Second
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, log: opts.Logger, clock: opts.Clock, marks: opts.Marks, ctx: ctx, cancel: cancel,
		byKey: make(map[key]*entry), byID: make(map[string]*entry), native: make(map[string]*rate.Limiter),
		unrecorded: make(map[*entry]bool),
	}
	if opts.Firewall != nil {
		m.fw.Store(&firewallRef{opts.Firewall})
	}
	m.lines = loglimit.New(loglimit.Options{Rate: 1, Burst: 10, Every: opts.LogEvery,
		Report: m.reportHeld,
		AfterFunc: func(d time.Duration, f func()) interface{ Stop() bool } {
			return opts.Clock.AfterFunc(d, f)
		}})
	return m
}

// Outcome says what Open did.
type Outcome int

const (
	Ignored     Outcome = iota // the door has nothing to run or open
	Granted                    // a new grant is being applied
	Extended                   // an existing grant's deadline moved
	RanStart                   // a start command with nothing to undo was run
	RateLimited                // the door's rate limit refused it
	Closed                     // the manager is shutting down
)

func (o Outcome) String() string {
	return [...]string{"ignored", "granted", "extended", "ran start", "rate limited", "closed"}[o]
}

// Auth is who asked for a grant, and how: zero for a knock.
type Auth struct {
	Method string // event.AuthFwknop or event.AuthSSH; "" for a knock
	User   string // the SPA packet's user name (as claimed), the SSH key's comment
	Key    string // the SSH key's SHA-256 fingerprint ("SHA256:...")
}

// Request is one grant asked for: what it opens, for whom, for how long,
// and who asked. Open makes one from a door and a knocker; the SPA paths
// (fwknop packets, SSH-signed knocks) make their own.
//
// A grant is one per (Name, Source) for knocks: a repeat knock extends
// it, and one after a reload changed what the door runs or opens
// replaces it. For SPA requests (Auth.Method set) it is one per (Name,
// Source, Auth.Key, Ports): a packet asking the same ports extends the
// grant, one asking other ports gets a grant of its own beside it (as
// fwknopd adds a rule per packet), never the old ports under a new
// deadline.
//
// A grant that arrives from a fleet carries its origin's ID, absolute
// Deadline and Origin node: it is one per ID (never merged with a local
// grant of the same door and source), a repeat moves it to a later
// Deadline, and it ends at Deadline whatever its start command took.
// Its deadline is still never more than Timeout from now (a clock ahead
// on the origin is cut back, and the cut is logged).
type Request struct {
	// Name is what grants: a door's name, an fwknop stanza ("spa#1"),
	// "ssh". Rate limits and log lines go by it (journald SESAME_DOOR).
	Name string
	// Source is the address the grant opens for.
	Source netip.Addr
	// Ports are opened natively, through the Firewall.
	Ports []knock.Port
	// StartCmd and StopCmd are commands with %IP% expanded; "" for none
	// (SPA grants have none). Without a start command no stop runs.
	StartCmd, StopCmd string
	// Timeout is the grant's length, from now or from the end of its
	// start command; a repeat extends it to now plus Timeout.
	Timeout time.Duration
	Auth    Auth
	// Replay is the SPA packet's replay digest: it is journaled with the
	// grant, or on its own when the request extends a grant or is
	// refused, before the request has any effect.
	Replay journal.Replay
	// ID, Deadline and Origin are set together, for a grant received
	// from a fleet: the origin's grant id (journal.ValidID), its
	// absolute deadline and the origin node's name.
	ID       string
	Deadline time.Time
	Origin   string
}

// Open gives src what door d opens, at now: a new grant, or an extension
// of the one src already holds for d (see Grant). It never blocks on
// I/O.
//
// When a reload changed what d runs or opens (its start or stop command,
// or its ports) since src's grant was made, the knock gets the new door:
// the old grant ends at once as its own door said (its stop command and
// native revoke run now), and the new grant is applied once that stop
// has finished (or first failed). A reload that changes only the
// timeout keeps the grant; the new timeout applies from this extension.
func (m *Manager) Open(d *config.Door, src netip.Addr, now time.Time) Outcome {
	src = src.Unmap()
	start, stop := d.Commands(src.Is6())
	// knockd: no start command means nothing runs, not even the stop.
	if start == "" {
		stop = ""
	}
	r := Request{Name: d.Name, Source: src, Ports: d.Open, Timeout: d.GrantTimeout()}
	if start != "" {
		r.StartCmd = command.Expand(start, src)
	}
	if stop != "" {
		r.StopCmd = command.Expand(stop, src)
	}
	return m.Grant(r, now)
}

// Grant gives r.Source what r asks for, at now: a new grant, or an
// extension of the one that has r's identity (see Request). It never
// blocks on I/O. Outcomes: Granted (being journaled and applied),
// Extended, RanStart, Ignored (nothing to run or open, or the grant it
// would extend is being revoked), RateLimited (r.Name's limit), Closed.
func (m *Manager) Grant(r Request, now time.Time) Outcome {
	if r.ID != "" || r.Origin != "" {
		return m.grantFleet(r, now)
	}
	src := r.Source.Unmap()
	timeout := r.Timeout
	fw := m.firewall()
	native := len(r.Ports) > 0 && fw != nil
	if len(r.Ports) > 0 && fw == nil && m.lines.Allow("nofw\x00"+r.Name, now) {
		m.log.Error("door opens ports but no firewall backend is available", event.KeyDoor, r.Name)
	}
	startCmd, stopCmd := r.StartCmd, r.StopCmd
	if startCmd == "" {
		stopCmd = ""
	}
	var ports []knock.Port
	if native {
		ports = r.Ports
	}
	rec := journal.Record{Door: r.Name, Source: src, Auth: r.Auth.Method, User: r.Auth.User, Key: r.Auth.Key,
		Open: ports, Replay: r.Replay}
	if rec.Auth != "" {
		rec.Open = sortedPorts(rec.Open)
		if len(rec.Open) == 0 {
			rec.Open = nil
		}
		ports = rec.Open
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Closed
	}
	k := keyOf(&rec)
	old := m.byKey[k]
	if old != nil && old.sameBehaviour(startCmd, stopCmd, ports) {
		if !r.Replay.IsZero() && m.opts.Journal != nil {
			// The packet's digest is durable before the extension takes
			// effect: a replay after a crash must not extend the grant.
			m.goTracked(func() {
				if !m.journalReplay(r.Replay, src, r.Name) {
					return
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				if !m.closed {
					m.extendLocked(old, now, timeout)
				}
			})
			return Extended
		}
		return m.extendLocked(old, now, timeout)
	}
	if startCmd == "" && !native {
		if old != nil {
			m.replaceLocked(old)
		}
		m.keepReplayLocked(r.Replay, src, r.Name)
		return Ignored
	}
	if !m.allowLocked(r.Name, startCmd, now) {
		if m.lines.Allow("refused\x00"+r.Name, now) {
			m.log.Warn(fmt.Sprintf("%s: %s: grant refused: rate limit reached", src, r.Name),
				event.Event{Kind: event.Refused, Door: r.Name, Source: src, Auth: r.Auth.Method, User: r.Auth.User, Key: r.Auth.Key}.Args(event.KeyReason, "rate limit")...)
		}
		m.keepReplayLocked(r.Replay, src, r.Name)
		return RateLimited
	}
	var after <-chan struct{}
	if old != nil {
		after = m.replaceLocked(old)
	}
	if stopCmd == "" && !native {
		// Nothing to undo, so nothing to track: knockd's behaviour.
		m.goTracked(func() {
			if m.wait(after) {
				m.opts.Commands.Run(m.ctx, r.Name, startCmd)
			}
		})
		return RanStart
	}
	rec.ID, rec.StopCmd = journal.NewID(), stopCmd
	rec.Start, rec.Deadline, rec.Timeout, rec.StartPending = now, now.Add(timeout), timeout, startCmd != ""
	if native {
		rec.Open = append([]knock.Port(nil), ports...)
		rec.Backend = fw.Name()
	}
	if sh := m.opts.Sharer; sh != nil {
		rec.Shared = sh.Share(&r)
	}
	e := newEntry(rec, timeout)
	e.startCmd, e.startKnown, e.after = startCmd, true, after
	m.byKey[k] = e
	m.byID[e.rec.ID] = e
	m.goTracked(func() { m.begin(e) })
	return Granted
}

// keepReplayLocked journals, on its own goroutine, the replay digest of
// a request that made no grant: the packet stays refused after a restart.
func (m *Manager) keepReplayLocked(r journal.Replay, src netip.Addr, name string) {
	if r.IsZero() || m.opts.Journal == nil || m.closed {
		return
	}
	m.goTracked(func() { m.journalReplay(r, src, name) })
}

// journalReplay writes a replay digest on its own and reports whether
// it is durable; a failure is logged.
func (m *Manager) journalReplay(r journal.Replay, src netip.Addr, name string) bool {
	if err := m.opts.Journal.Replay(r); err != nil {
		m.log.Error(fmt.Sprintf("%s: %s: request refused: replay digest not journaled: %v", src, name, err),
			event.Event{Kind: event.Refused, Door: name, Source: src}.Args(event.KeyReason, "journal", "error", err.Error())...)
		return false
	}
	m.journalWorks()
	return true
}

// sameBehaviour reports whether a grant made now by its door would run
// and open what e does.
func (e *entry) sameBehaviour(startCmd, stopCmd string, ports []knock.Port) bool {
	if e.rec.StopCmd != stopCmd || (e.startKnown && e.startCmd != startCmd) || len(e.rec.Open) != len(ports) {
		return false
	}
	for i := range ports {
		if e.rec.Open[i] != ports[i] {
			return false
		}
	}
	return true
}

// replaceLocked ends old, whose door changed under it, and returns what
// its successor waits for.
func (m *Manager) replaceLocked(old *entry) <-chan struct{} {
	m.log.Info(fmt.Sprintf("%s: %s: the door's commands changed since grant %s; ending it with the old stop command before granting again",
		old.rec.Source, old.rec.Door, old.rec.ID), m.fields(old, event.Revoke)...)
	if m.byKey[old.k] == old {
		delete(m.byKey, old.k)
	}
	m.startRevokeLocked(old, "reload")
	return old.settled
}

// wait waits for ch (nil: no wait); false when the manager closed first.
func (m *Manager) wait(ch <-chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-m.ctx.Done():
		return false
	}
}

func (m *Manager) goTracked(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// sleep waits d on the manager's clock; a poke cuts it short. It returns
// false when the manager closed first.
func (m *Manager) sleep(d time.Duration, poke <-chan struct{}) bool {
	ch := make(chan struct{})
	t := m.clock.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-poke:
		t.Stop()
		return true
	case <-m.ctx.Done():
		t.Stop()
		return false
	}
}

// fieldsNow is fields for a grant that may be Active, whose deadline an
// extension can move meanwhile; it takes mu.
func (m *Manager) fieldsNow(e *entry, kind event.Kind) []any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fields(e, kind)
}

// fields are the structured fields of a log line about e. Call it with mu
// held, or for a grant whose deadline no longer moves (starting or being
// revoked).
func (m *Manager) fields(e *entry, kind event.Kind, extra ...any) []any {
	if e.rec.Origin != "" {
		extra = append([]any{event.KeyOrigin, e.rec.Origin}, extra...)
	}
	return event.Event{Kind: kind, Door: e.rec.Door, Source: e.rec.Source,
		GrantID: e.rec.ID, Deadline: e.rec.Deadline, Auth: e.rec.Auth, User: e.rec.User, Key: e.rec.Key}.Args(extra...)
}

// reportHeld summarises log lines the limiter held back.
func (m *Manager) reportHeld(k string, n uint64, every time.Duration) {
	kind, door, _ := cut(k)
	switch kind {
	case "extend":
		m.log.Info(fmt.Sprintf("%s: %d more grant extensions in the last %v (not logged one by one)", door, n, every),
			event.Event{Kind: event.Extend, Door: door}.Args(event.KeySuppressed, n)...)
	case "refused":
		m.log.Warn(fmt.Sprintf("%s: grant refused: rate limit reached, %d more opens refused in the last %v (not logged one by one)", door, n, every),
			event.Event{Kind: event.Refused, Door: door}.Args(event.KeySuppressed, n)...)
	default:
		m.log.Warn(fmt.Sprintf("%d grant log lines held back in the last %v", n, every), "suppressed", n)
	}
}

func cut(k string) (kind, door string, ok bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

// Revoke revokes now every grant whose ID is target, or begins with
// target (a prefix of at least MinIDPrefix characters that names one
// grant, as git takes a short hash), or whose source is the address
// target, and returns their IDs. A grant whose stop is failing is
// retried at once. Outcomes: the IDs; an error wrapping ErrAmbiguousID
// that lists the grants a prefix names; an error saying nothing matches.
func (m *Manager) Revoke(target string) ([]string, error) {
	addr, aerr := netip.ParseAddr(target)
	m.mu.Lock()
	var es []*entry
	if aerr == nil {
		for _, e := range m.byID {
			if e.rec.Source == addr.Unmap() {
				es = append(es, e)
			}
		}
	} else {
		e, err := m.byIDLocked(target)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		es = append(es, e)
	}
	var ids []string
	for _, e := range es {
		switch e.state {
		case Starting, Active:
			m.startRevokeLocked(e, "admin")
		case StopFailing, Unrecorded:
			poke(e)
		default:
			continue
		}
		ids = append(ids, e.rec.ID)
	}
	m.mu.Unlock()
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil, fmt.Errorf("no active grant matches %q", target)
	}
	return ids, nil
}

// RevokeIf revokes now every grant for which match (called with the
// Manager's lock held: it must not call the Manager) returns true, as
// Revoke does, logging why (a reload that removed an SSH key: "key
// removed"), and returns their IDs.
func (m *Manager) RevokeIf(match func(Grant) bool, why string) []string {
	m.mu.Lock()
	var ids []string
	for _, e := range m.byID {
		if e.state != Starting && e.state != Active {
			continue
		}
		if match(view(e)) {
			m.startRevokeLocked(e, why)
			ids = append(ids, e.rec.ID)
		}
	}
	m.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// MinIDPrefix is the shortest prefix of a grant ID that Revoke and
// Forget take for the whole ID.
const MinIDPrefix = 4

// ErrAmbiguousID is wrapped by the error for an ID prefix that names
// more than one grant.
var ErrAmbiguousID = errors.New("ambiguous grant id")

// byIDLocked finds the grant whose ID is id, or the one grant whose ID
// begins with it.
func (m *Manager) byIDLocked(id string) (*entry, error) {
	if e := m.byID[id]; e != nil {
		return e, nil
	}
	if len(id) < MinIDPrefix {
		return nil, fmt.Errorf("no grant %q (a shortened id needs at least %d characters)", id, MinIDPrefix)
	}
	var found []*entry
	for gid, e := range m.byID {
		if strings.HasPrefix(gid, id) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no grant %q", id)
	case 1:
		return found[0], nil
	}
	sort.Slice(found, func(i, j int) bool { return found[i].rec.ID < found[j].rec.ID })
	var names []string
	for _, e := range found {
		names = append(names, fmt.Sprintf("%s (%s, %s)", e.rec.ID, e.rec.Door, e.rec.Source))
	}
	return nil, fmt.Errorf("%w: %q names %d grants: %s", ErrAmbiguousID, id, len(found), strings.Join(names, ", "))
}

func poke(e *entry) {
	select {
	case e.poke <- struct{}{}:
	default:
	}
}

// ErrNotFailing is returned by Forget for a grant whose stop is not
// failing: such a grant ends the usual way (Revoke).
var ErrNotFailing = errors.New("its stop is not failing")

// Forget ends the grant id (or the one a prefix of it names, see
// Revoke) whose stop command (or native revoke) keeps
// failing, without running it again: an admin closed by hand what it
// opened. The journal records it as forgotten. When a stop attempt is
// running, Forget waits for it (until ctx ends): if it succeeds the grant
// is revoked the usual way. Outcomes: nil once the grant is gone; an
// error wrapping ErrNotFailing, or saying there is no such grant, or that
// the running attempt outlasted ctx (the grant is then forgotten when it
// ends).
func (m *Manager) Forget(ctx context.Context, id string) error {
	m.mu.Lock()
	e, err := m.byIDLocked(id)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	id = e.rec.ID
	if e.state != StopFailing {
		st := e.state
		m.mu.Unlock()
		return fmt.Errorf("grant %s is %s: %w (sesame revoke %s ends it)", id, st, ErrNotFailing, id)
	}
	e.forget = true
	poke(e)
	done := e.done
	m.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("grant %s: a stop attempt is still running; the grant is forgotten when it ends", id)
	}
}

// List returns the live grants, soonest deadline first; grants with the
// same deadline (an SPA packet's extension beside its other grant) in the
// order they started, then by id, so the order is always the same.
func (m *Manager) List() []Grant {
	m.mu.Lock()
	out := make([]Grant, 0, len(m.byID))
	for _, e := range m.byID {
		out = append(out, Grant{
			ID: e.rec.ID, Door: e.rec.Door, Source: e.rec.Source, Open: e.rec.Open,
			Ports: knock.FormatSequence(e.rec.Open), StopCmd: e.rec.StopCmd,
			Start: e.rec.Start, Deadline: e.rec.Deadline, State: e.state.String(),
			Attempts: e.attempts, LastError: e.lastErr, StartError: e.startErr,
			Auth: e.rec.Auth, User: e.rec.User, Key: e.rec.Key,
			Origin: e.rec.Origin, Shared: e.rec.Shared,
		})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case !a.Deadline.Equal(b.Deadline):
			return a.Deadline.Before(b.Deadline)
		case !a.Start.Equal(b.Start):
			return a.Start.Before(b.Start)
		}
		return a.ID < b.ID
	})
	return out
}

// WithNative calls f with the native grants that should be in the
// firewall now, while no grant is being applied or revoked, so that f can
// compare them with the kernel (firewall.Reconcile) without racing.
func (m *Manager) WithNative(f func(want []firewall.Grant)) {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	f(m.Native())
}

// Native returns the native grants that should be in the firewall now.
func (m *Manager) Native() []firewall.Grant {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []firewall.Grant
	for _, e := range m.byID {
		if len(e.rec.Open) > 0 && (e.state == Starting || e.state == Active) {
			out = append(out, nativeGrant(e))
		}
	}
	return out
}

// Close stops scheduling revokes and waits, until ctx ends, for running
// commands and journal writes. Grants still open stay in the journal and
// are resumed by the next start; none is revoked by a clean shutdown.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, e := range m.byID {
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	m.mu.Unlock()
	// Cancelling ends waits for a command slot and retry back-offs; a
	// command already running is left to finish.
	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	defer m.lines.Close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Commands still running keep their process groups; the journal
		// has what is needed to finish after a restart.
		return errors.New("grant: shutdown: commands still running")
	}
}

// allowLocked takes one grant of door from its rate limit. Commands are
// limited hard (each is a fork); a native grant is a journal record and
// a set element, so its limit only bounds what a flood of spoofed opens
// can pile up.
func (m *Manager) allowLocked(door, startCmd string, now time.Time) bool {
	if startCmd != "" {
		return m.opts.Commands.Allow(door, now)
	}
	return m.nativeLimit(door).AllowN(now, 1)
}
