package grant

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/exec"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/journal"
)

// trace is a shared, ordered log of what the fakes were asked to do, so
// tests can assert ordering across journal, commands and firewall.
type trace struct {
	mu    sync.Mutex
	lines []string
}

func (t *trace) add(format string, args ...any) {
	t.mu.Lock()
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

func (t *trace) all() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

func (t *trace) count(prefix string) int {
	n := 0
	for _, l := range t.all() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

type fakeJournal struct {
	tr      *trace
	clock   *fakeClock
	failAll bool
}

func (j *fakeJournal) Grant(r journal.Record) error {
	if j.failAll {
		return fmt.Errorf("journal: append grant %s: no space left on device", r.ID)
	}
	j.tr.add("journal grant %s %s stop=%q open=%v deadline=%s", r.Door, r.Source, r.StopCmd, r.Open, j.clock.rel(r.Deadline))
	return nil
}
func (j *fakeJournal) Extend(id string, dl time.Time) error {
	j.tr.add("journal extend %s", j.clock.rel(dl))
	return nil
}
func (j *fakeJournal) Revoking(id string) error { j.tr.add("journal revoking"); return nil }
func (j *fakeJournal) Revoked(id string, at time.Time) error {
	j.tr.add("journal revoked at %s", j.clock.rel(at))
	return nil
}

type fakeFirewall struct {
	tr    *trace
	clock *fakeClock
}

func (f *fakeFirewall) Name() string { return "fake" }
func (f *fakeFirewall) Grant(ctx context.Context, g firewall.Grant, now time.Time) error {
	f.tr.add("fw grant %s %v until %s", g.Src, g.Ports, f.clock.rel(g.Deadline))
	return nil
}
func (f *fakeFirewall) Revoke(ctx context.Context, g firewall.Grant) error {
	f.tr.add("fw revoke %s", g.Src)
	return nil
}

// fakeCommands records commands; a command's "duration" advances the
// fake clock, and results can be scripted per command text.
type fakeCommands struct {
	tr       *trace
	clock    *fakeClock
	duration time.Duration
	deny     bool
	mu       sync.Mutex
	fails    map[string]int // command -> remaining failures
}

func (c *fakeCommands) Allow(door string, now time.Time) bool { return !c.deny }
func (c *fakeCommands) Run(ctx context.Context, door, cmd string, env ...string) exec.Result {
	return c.run(door, cmd, "")
}
func (c *fakeCommands) RunMarked(ctx context.Context, door, cmd, marker string, env ...string) exec.Result {
	return c.run(door, cmd, marker)
}
func (c *fakeCommands) run(door, cmd, marker string) exec.Result {
	c.tr.add("run %s: %s", door, cmd)
	c.clock.Advance(c.duration)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails[cmd] > 0 {
		c.fails[cmd]--
		return exec.Result{Cmd: cmd, ExitCode: 1}
	}
	if marker != "" {
		os.WriteFile(marker, []byte("0\n"), 0o600)
	}
	return exec.Result{Cmd: cmd, ExitCode: 0}
}

// fakeClock fires AfterFunc callbacks when Advance passes their time.
type fakeClock struct {
	mu     sync.Mutex
	t0     time.Time
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newClock() *fakeClock {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	return &fakeClock{t0: t0, now: t0}
}

func (c *fakeClock) rel(t time.Time) string { return "+" + t.Sub(c.t0).String() }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward, running due callbacks in time order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var due *fakeTimer
		for i, t := range c.timers {
			if !t.stopped && !t.at.After(end) {
				due = t
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		if due == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		if due.at.After(c.now) {
			c.now = due.at
		}
		due.stopped = true
		c.mu.Unlock()
		due.f()
	}
}

type rig struct {
	t     *testing.T
	tr    *trace
	clock *fakeClock
	j     *fakeJournal
	fw    *fakeFirewall
	cmds  *fakeCommands
	m     *Manager
}

func newRig(t *testing.T) *rig {
	tr := &trace{}
	clock := newClock()
	r := &rig{t: t, tr: tr, clock: clock,
		j:    &fakeJournal{tr: tr, clock: clock},
		fw:   &fakeFirewall{tr: tr, clock: clock},
		cmds: &fakeCommands{tr: tr, clock: clock, fails: map[string]int{}},
	}
	r.m = New(Options{Journal: r.j, Firewall: r.fw, Commands: r.cmds, Clock: clock,
		MarkerDir: t.TempDir(), RetryBase: time.Millisecond, RetryMax: 2 * time.Millisecond, Retries: 3})
	t.Cleanup(func() { r.m.Close(context.Background()) })
	return r
}

// settle waits for the manager's goroutines (begin, revoke) to finish.
func (r *rig) settle() { r.m.wg.Wait() }

func (r *rig) advance(d time.Duration) {
	r.clock.Advance(d)
	r.settle()
}

func (r *rig) expect(want ...string) {
	r.t.Helper()
	got := r.tr.all()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		r.t.Fatalf("trace:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
