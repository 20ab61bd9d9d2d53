// Package grant owns the lifecycle of what an opened door gives a knocker:
// a grant per (door, source) that is journaled before anything is
// applied, applied (native firewall access and/or the door's start
// command), extended by a repeat knock instead of applied twice, and
// revoked at its deadline (stop command and/or native revoke), durably
// recorded, retried when a stop fails, and resumed after a restart.
// It decides when commands run; package exec runs them and package
// firewall applies native rules.
package grant

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/exec"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Journal is the durable record of grants (package journal).
type Journal interface {
	Grant(r journal.Record) error
	Extend(id string, deadline time.Time) error
	Revoking(id string) error
	Revoked(id string, at time.Time) error
}

// Firewall applies native grants (package firewall's backends).
type Firewall interface {
	Name() string
	Grant(ctx context.Context, g firewall.Grant, now time.Time) error
	Revoke(ctx context.Context, g firewall.Grant) error
}

// Commands runs door commands (package exec).
type Commands interface {
	Allow(door string, now time.Time) bool
	Run(ctx context.Context, door, cmd string, env ...string) exec.Result
	RunMarked(ctx context.Context, door, cmd, marker string, env ...string) exec.Result
}

// Clock is time as the manager sees it; tests replace it.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled call that can be cancelled.
type Timer interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Options configure a Manager. Commands is required; Journal and
// Firewall may be nil (no durability; no native grants).
type Options struct {
	Journal  Journal
	Firewall Firewall
	Commands Commands
	// MarkerDir receives a file per running stop command holding its exit
	// status, so a stop that finished while the daemon was dead is not run
	// again. Empty disables markers (a resumed, interrupted stop reruns).
	MarkerDir string
	// MarkerWait bounds how long Resume waits for a stop command that a
	// killed daemon left running (default 2 min, exec's kill timeout).
	MarkerWait time.Duration
	Logger     hclog.Logger
	Clock      Clock
	// RetryBase is the first delay before a failed stop is retried; it
	// doubles up to RetryMax per attempt, for at most Retries attempts.
	RetryBase time.Duration
	RetryMax  time.Duration
	Retries   int
}

// State is where a grant is in its life.
type State int

const (
	Starting State = iota // journaled; being applied
	Active                // applied; revoked at its deadline
	Revoking              // being revoked
)

func (s State) String() string {
	return [...]string{"starting", "active", "revoking"}[s]
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
}

type key struct {
	door string
	src  netip.Addr
}

// entry is one grant. Fields other than rec.Deadline, state, timer,
// extendTo and revokeNow are fixed once the entry is published.
type entry struct {
	rec      journal.Record
	timeout  time.Duration
	startCmd string
	state    State     // guarded by Manager.mu
	timer    Timer     // guarded by Manager.mu
	extendTo time.Time // guarded by Manager.mu: a knock while Starting
	// interrupted: resumed from a journal whose Revoking had no Revoked.
	interrupted bool
	// revokeNow asks begin to revoke as soon as the grant is applied
	// (an admin revoked it while it was starting). Guarded by Manager.mu.
	revokeNow bool

	persistMu sync.Mutex // serialises journal writes of this grant's deadline
	persisted time.Time  // guarded by persistMu
}

// Manager holds the live grants. Open is called by the engine goroutine
// and returns without blocking on I/O; journal writes, commands and
// firewall calls run on goroutines the Manager tracks and Close waits for.
type Manager struct {
	opts   Options
	log    hclog.Logger
	clock  Clock
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// fwMu serialises native firewall changes with Reconcile, which must
	// not see a grant applied after it took its snapshot of what is wanted
	// (it would remove it as stale). Never taken while holding mu.
	fwMu sync.Mutex

	mu     sync.Mutex // guards byKey, byID, closed, and the fields of entries marked so
	byKey  map[key]*entry
	byID   map[string]*entry
	closed bool
	// limited counts, per door, opens refused by the rate limit since
	// the last warning about them.
	limited map[string]limitNote
	// native limits opens of doors that only grant natively, per door.
	native map[string]*rate.Limiter
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

type limitNote struct {
	n    int
	last time.Time
}

// New returns a Manager.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Minute
	}
	if opts.Retries <= 0 {
		opts.Retries = 6
	}
	if opts.MarkerWait <= 0 {
		opts.MarkerWait = 2 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		opts: opts, log: opts.Logger, clock: opts.Clock, ctx: ctx, cancel: cancel,
		byKey: make(map[key]*entry), byID: make(map[string]*entry), limited: make(map[string]limitNote), native: make(map[string]*rate.Limiter),
	}
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

// Open gives src what door d opens, at now: a new grant, or an extension
// of the one src already holds for d. It never blocks on I/O.
func (m *Manager) Open(d *config.Door, src netip.Addr, now time.Time) Outcome {
	src = src.Unmap()
	timeout := d.GrantTimeout()
	start, stop := d.Commands(src.Is6())
	native := len(d.Open) > 0 && m.opts.Firewall != nil
	if len(d.Open) > 0 && m.opts.Firewall == nil {
		m.log.Error("door opens ports but no firewall backend is available", "door", d.Name)
	}
	// knockd: no start command means nothing runs, not even the stop.
	if start == "" {
		stop = ""
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Closed
	}
	k := key{d.Name, src}
	if e := m.byKey[k]; e != nil {
		return m.extendLocked(e, now)
	}
	if start == "" && !native {
		return Ignored
	}
	// Commands are limited hard (each is a fork); a native grant is a
	// journal record and a set element, so its limit only bounds what a
	// flood of spoofed opens can pile up.
	allowed := false
	if start != "" {
		allowed = m.opts.Commands.Allow(d.Name, now)
	} else {
		allowed = m.nativeLimit(d.Name).AllowN(now, 1)
	}
	if !allowed {
		// One line per door per second: a door that fires on every
		// packet of a flood must not flood the log instead.
		l := m.limited[d.Name]
		l.n++
		if now.Sub(l.last) >= time.Second {
			m.log.Warn(fmt.Sprintf("%s: %s: grant refused: rate limit reached, %d opens refused in the last second", src, d.Name, l.n),
				"event", "refused", "door", d.Name, "source", src.String(), "refused", l.n)
			l.n, l.last = 0, now
		}
		m.limited[d.Name] = l
		return RateLimited
	}
	if stop == "" && !native {
		// Nothing to undo, so nothing to track: knockd's behaviour.
		cmd := exec.Expand(start, src)
		m.goTracked(func() { m.opts.Commands.Run(m.ctx, d.Name, cmd) })
		return RanStart
	}
	e := &entry{
		rec: journal.Record{
			ID: journal.NewID(), Door: d.Name, Source: src,
			Start: now, Deadline: now.Add(timeout),
		},
		timeout: timeout,
	}
	if stop != "" {
		e.rec.StopCmd = exec.Expand(stop, src)
	}
	if start != "" {
		e.startCmd = exec.Expand(start, src)
	}
	if native {
		e.rec.Open = append([]knock.Port(nil), d.Open...)
		e.rec.Backend = m.opts.Firewall.Name()
	}
	m.byKey[k] = e
	m.byID[e.rec.ID] = e
	m.goTracked(func() { m.begin(e) })
	return Granted
}

func (m *Manager) goTracked(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

func (m *Manager) fields(e *entry, event string) []any {
	return []any{"event", event, "door", e.rec.Door, "source", e.rec.Source.String(),
		"grant_id", e.rec.ID, "deadline", e.rec.Deadline.UTC().Format(time.RFC3339Nano)}
}

// extendLocked moves e's deadline to now plus its timeout.
func (m *Manager) extendLocked(e *entry, now time.Time) Outcome {
	dl := now.Add(e.timeout)
	switch e.state {
	case Starting:
		if dl.After(e.extendTo) {
			e.extendTo = dl
		}
		return Extended
	case Active:
		if !dl.After(e.rec.Deadline) {
			return Extended
		}
		e.rec.Deadline = dl
		m.scheduleLocked(e)
		m.log.Info(fmt.Sprintf("%s: %s: grant extended until %s", e.rec.Source, e.rec.Door, dl.Format(time.RFC3339)), m.fields(e, "extend")...)
		m.goTracked(func() {
			m.persistDeadline(e)
			m.applyNative(e)
		})
		return Extended
	}
	return Ignored
}

// begin journals and applies a new grant.
func (m *Manager) begin(e *entry) {
	if j := m.opts.Journal; j != nil {
		if err := j.Grant(e.rec); err != nil {
			// Without a durable record a crash could leak this grant:
			// refuse it, keep serving the ones already journaled.
			m.log.Error(fmt.Sprintf("%s: %s: grant refused: %v", e.rec.Source, e.rec.Door, err), m.fields(e, "refused")...)
			m.mu.Lock()
			m.forgetLocked(e)
			m.mu.Unlock()
			return
		}
		e.persistMu.Lock()
		e.persisted = e.rec.Deadline
		e.persistMu.Unlock()
	}
	m.log.Info(fmt.Sprintf("%s: %s: access granted", e.rec.Source, e.rec.Door), append(m.fields(e, "grant"), "ports", knock.FormatSequence(e.rec.Open), "stop_command", e.rec.StopCmd)...)
	m.applyNative(e)
	deadline := e.rec.Deadline
	if e.startCmd != "" {
		m.opts.Commands.Run(m.ctx, e.rec.Door, e.startCmd)
		// knockd's cmd_timeout runs from the end of the start command.
		deadline = m.clock.Now().Add(e.timeout)
	}
	m.mu.Lock()
	if e.extendTo.After(deadline) {
		deadline = e.extendTo
	}
	if deadline.After(e.rec.Deadline) {
		e.rec.Deadline = deadline
	}
	e.state = Active
	revokeNow := e.revokeNow
	if !revokeNow {
		m.scheduleLocked(e)
	}
	m.mu.Unlock()
	if revokeNow {
		m.startRevoke(e, "admin")
		return
	}
	m.persistDeadline(e)
	m.applyNative(e)
}

// applyNative (re)applies e's native grant with its current deadline; a
// repeat is an extension in the backend.
func (m *Manager) applyNative(e *entry) {
	if len(e.rec.Open) == 0 || m.opts.Firewall == nil {
		return
	}
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	m.mu.Lock()
	g := nativeGrant(e)
	state := e.state
	m.mu.Unlock()
	if state == Revoking {
		return // a revoke overtook this (re)apply
	}
	if err := m.opts.Firewall.Grant(m.ctx, g, m.clock.Now()); err != nil {
		// The reconcile loop puts back what is missing.
		m.log.Error(fmt.Sprintf("%s: %s: native grant: %v", e.rec.Source, e.rec.Door, err), m.fields(e, "grant")...)
	}
}

func nativeGrant(e *entry) firewall.Grant {
	return firewall.Grant{ID: e.rec.ID, Door: e.rec.Door, Src: e.rec.Source, Ports: e.rec.Open, Deadline: e.rec.Deadline}
}

// persistDeadline journals e's current deadline if it moved. Writes for
// one grant are serialised and always write the latest value, so a slow
// fsync cannot leave an older deadline last in the journal.
func (m *Manager) persistDeadline(e *entry) {
	j := m.opts.Journal
	if j == nil {
		return
	}
	e.persistMu.Lock()
	defer e.persistMu.Unlock()
	m.mu.Lock()
	dl := e.rec.Deadline
	m.mu.Unlock()
	if dl.Equal(e.persisted) {
		return
	}
	if err := j.Extend(e.rec.ID, dl); err != nil {
		// The journal keeps the earlier deadline: after a crash the grant
		// would close early, never late.
		m.log.Error(fmt.Sprintf("%s: %s: journal extend: %v", e.rec.Source, e.rec.Door, err), m.fields(e, "extend")...)
		return
	}
	e.persisted = dl
}

// scheduleLocked (re)arms e's revoke timer at its deadline.
func (m *Manager) scheduleLocked(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
	}
	d := e.rec.Deadline.Sub(m.clock.Now())
	if d < 0 {
		d = 0
	}
	e.timer = m.clock.AfterFunc(d, func() { m.expire(e) })
}

func (m *Manager) expire(e *entry) {
	m.mu.Lock()
	if e.state != Active || m.closed {
		m.mu.Unlock()
		return
	}
	if now := m.clock.Now(); now.Before(e.rec.Deadline) {
		// Extended after this timer fired: wait for the new deadline.
		m.scheduleLocked(e)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.startRevoke(e, "expire")
}

// startRevoke takes e out of the live set and revokes it on a tracked
// goroutine.
func (m *Manager) startRevoke(e *entry, why string) {
	m.mu.Lock()
	if e.state == Revoking {
		m.mu.Unlock()
		return
	}
	e.state = Revoking
	if e.timer != nil {
		e.timer.Stop()
	}
	if m.byKey[key{e.rec.Door, e.rec.Source}] == e {
		delete(m.byKey, key{e.rec.Door, e.rec.Source})
	}
	m.mu.Unlock()
	if why == "expire" {
		msg := fmt.Sprintf("%s: %s: command timeout", e.rec.Source, e.rec.Door)
		if e.rec.StopCmd == "" {
			msg = fmt.Sprintf("%s: %s: grant expired", e.rec.Source, e.rec.Door)
		}
		m.log.Info(msg, m.fields(e, "expire")...)
	}
	m.goTracked(func() { m.revoke(e, why) })
}

func (m *Manager) marker(id string) string {
	if m.opts.MarkerDir == "" {
		return ""
	}
	return filepath.Join(m.opts.MarkerDir, id+".stopped")
}

// revoke runs the stop command and the native revoke, with retries, and
// records the revocation.
func (m *Manager) revoke(e *entry, why string) {
	ok := true
	stop := e.rec.StopCmd
	if stop != "" && e.interrupted {
		if mk := m.marker(e.rec.ID); mk != "" {
			if done, rc := exec.Marked(mk, m.opts.MarkerWait); done {
				// It ran to completion while no daemon watched.
				m.log.Info(fmt.Sprintf("%s: %s: stop command had finished before the restart (status %d)", e.rec.Source, e.rec.Door, rc), m.fields(e, "replay")...)
				stop = ""
			}
		}
	}
	if stop != "" {
		if j := m.opts.Journal; j != nil {
			if err := j.Revoking(e.rec.ID); err != nil {
				m.log.Error(fmt.Sprintf("%s: %s: journal: %v", e.rec.Source, e.rec.Door, err), m.fields(e, "revoke")...)
			}
		}
		ok = m.retry(e, "stop command", func() error {
			var res exec.Result
			if mk := m.marker(e.rec.ID); mk != "" {
				res = m.opts.Commands.RunMarked(m.ctx, e.rec.Door, stop, mk)
			} else {
				res = m.opts.Commands.Run(m.ctx, e.rec.Door, stop)
			}
			if res.Err != nil {
				return res.Err
			}
			if res.ExitCode != 0 {
				return fmt.Errorf("exit status %d", res.ExitCode)
			}
			return nil
		})
	}
	if len(e.rec.Open) > 0 && m.opts.Firewall != nil {
		ok = m.retry(e, "native revoke", func() error {
			m.fwMu.Lock()
			defer m.fwMu.Unlock()
			return m.opts.Firewall.Revoke(m.ctx, nativeGrant(e))
		}) && ok
	}
	m.finish(e, why, ok)
}

// retry calls f until it succeeds, the attempts run out, or the manager
// closes (the journal then still holds the grant for the next start).
func (m *Manager) retry(e *entry, what string, f func() error) bool {
	delay := m.opts.RetryBase
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return true
		}
		if attempt >= m.opts.Retries || m.ctx.Err() != nil {
			m.log.Error(fmt.Sprintf("%s: %s: %s failed %d times, giving up: %v", e.rec.Source, e.rec.Door, what, attempt, err), m.fields(e, "revoke")...)
			return false
		}
		m.log.Warn(fmt.Sprintf("%s: %s: %s failed (%v), retrying in %v", e.rec.Source, e.rec.Door, what, err, delay), m.fields(e, "revoke")...)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return false
		}
		delay = min(2*delay, m.opts.RetryMax)
	}
}

func (m *Manager) finish(e *entry, why string, ok bool) {
	if m.ctx.Err() != nil && !ok {
		// Shutting down mid-revoke: leave the grant journaled.
		return
	}
	if j := m.opts.Journal; j != nil {
		if err := j.Revoked(e.rec.ID, m.clock.Now()); err != nil {
			// The marker stays, so a restart records this without rerunning the stop.
			m.log.Error(fmt.Sprintf("%s: %s: journal: %v", e.rec.Source, e.rec.Door, err), m.fields(e, "revoke")...)
		} else if mk := m.marker(e.rec.ID); mk != "" {
			os.Remove(mk)
			os.Remove(mk + ".pid")
		}
	}
	m.mu.Lock()
	m.forgetLocked(e)
	m.mu.Unlock()
	status := "done"
	if !ok {
		status = "failed"
	}
	m.log.Info(fmt.Sprintf("%s: %s: access revoked", e.rec.Source, e.rec.Door), append(m.fields(e, "revoke"), "reason", why, "status", status)...)
}

func (m *Manager) forgetLocked(e *entry) {
	if m.byKey[key{e.rec.Door, e.rec.Source}] == e {
		delete(m.byKey, key{e.rec.Door, e.rec.Source})
	}
	delete(m.byID, e.rec.ID)
}

// Resume takes over grants a previous run journaled and did not revoke:
// overdue ones are revoked now, the others at their original deadline. A
// stop that was interrupted is run again unless its marker shows it
// finished. Call it before capture starts.
func (m *Manager) Resume(recs []journal.Record, doors []*config.Door) {
	now := m.clock.Now()
	timeouts := make(map[string]time.Duration)
	for _, d := range doors {
		if _, ok := timeouts[d.Name]; !ok {
			timeouts[d.Name] = d.GrantTimeout()
		}
	}
	for _, r := range recs {
		e := &entry{rec: r, persisted: r.Deadline, state: Active}
		e.timeout = timeouts[r.Door]
		if e.timeout == 0 {
			e.timeout = r.Deadline.Sub(r.Start)
		}
		m.log.Info(fmt.Sprintf("%s: %s: resuming grant %s", r.Source, r.Door, r.ID), m.fields(e, "replay")...)
		// A stop interrupted by the crash: revoke now; revoke first checks
		// whether the stop in fact finished (or is still finishing).
		e.interrupted = r.RevokeStarted
		m.mu.Lock()
		m.byID[r.ID] = e
		if old := m.byKey[key{r.Door, r.Source}]; old == nil || old.rec.Deadline.Before(r.Deadline) {
			m.byKey[key{r.Door, r.Source}] = e
		}
		if !r.Deadline.After(now) || r.RevokeStarted {
			m.mu.Unlock()
			m.startRevoke(e, "replay")
			continue
		}
		m.scheduleLocked(e)
		m.mu.Unlock()
		m.goTracked(func() { m.applyNative(e) })
	}
}

// Revoke revokes now every grant whose ID is target or whose source is
// the address target, and returns their IDs.
func (m *Manager) Revoke(target string) ([]string, error) {
	addr, aerr := netip.ParseAddr(target)
	m.mu.Lock()
	var hits []*entry
	for _, e := range m.byID {
		if e.rec.ID == target || (aerr == nil && e.rec.Source == addr.Unmap()) {
			if e.state != Revoking {
				hits = append(hits, e)
			}
		}
	}
	var now []*entry
	for _, e := range hits {
		if e.state == Starting {
			e.revokeNow = true
		} else {
			now = append(now, e)
		}
	}
	m.mu.Unlock()
	for _, e := range now {
		m.startRevoke(e, "admin")
	}
	ids := make([]string, 0, len(hits))
	for _, e := range hits {
		ids = append(ids, e.rec.ID)
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil, fmt.Errorf("no active grant matches %q", target)
	}
	return ids, nil
}

// List returns the live grants, soonest deadline first.
func (m *Manager) List() []Grant {
	m.mu.Lock()
	out := make([]Grant, 0, len(m.byID))
	for _, e := range m.byID {
		out = append(out, Grant{
			ID: e.rec.ID, Door: e.rec.Door, Source: e.rec.Source, Open: e.rec.Open,
			Ports: knock.FormatSequence(e.rec.Open), StopCmd: e.rec.StopCmd,
			Start: e.rec.Start, Deadline: e.rec.Deadline, State: e.state.String(),
		})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Deadline.Before(out[j].Deadline) })
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
		if len(e.rec.Open) > 0 && e.state != Revoking {
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
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Commands still running keep their process groups; the journal
		// has what is needed to finish after a restart.
		return errors.New("grant: shutdown: commands still running")
	}
}
