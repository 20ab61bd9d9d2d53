package grant

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// The tests run in synctest bubbles: the manager uses the real clock
// (time.Now, time.AfterFunc), which is fake inside a bubble, so time
// passes only when every goroutine waits, and a trace shows exact times.

// trace is a shared, ordered log of what the fakes were asked to do, so
// tests can assert ordering across journal, commands and firewall.
type trace struct {
	mu    sync.Mutex
	t0    time.Time
	lines []string
}

func (t *trace) add(format string, args ...any) {
	t.mu.Lock()
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

func (t *trace) rel(at time.Time) string { return "+" + at.Sub(t.t0).String() }

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
	tr *trace
	mu sync.Mutex
	// failAll fails every write; failRevoked fails that many Revoked
	// writes.
	failAll     bool
	failRevoked int
	// block, when not nil, holds every Extend until it is closed;
	// blockGrant every Grant.
	block, blockGrant chan struct{}
	// holdGrant, when not nil, holds every Grant until it is closed (its
	// failAll is read after), and traces "journal grant begun" first.
	holdGrant          chan struct{}
	inFlight, maxPeak  int
	extends            int
	lastExtendDeadline time.Time
}

func (j *fakeJournal) fail() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failAll
}

func (j *fakeJournal) Grant(r journal.Record) error {
	j.mu.Lock()
	block, hold := j.blockGrant, j.holdGrant
	j.mu.Unlock()
	if block != nil {
		<-block
	}
	if hold != nil {
		j.tr.add("journal grant begun")
		<-hold
	}
	if j.fail() {
		return fmt.Errorf("journal: append grant %s: no space left on device", r.ID)
	}
	j.tr.add("journal grant %s %s stop=%q open=%v deadline=%s pending=%v", r.Door, r.Source, r.StopCmd, r.Open, j.tr.rel(r.Deadline), r.StartPending)
	if r.Auth != "" {
		j.tr.add("  by %s %q %s replay %x until %s", r.Auth, r.User, r.Key, r.Replay.Digest[:2], j.tr.rel(r.Replay.Expires))
	}
	return nil
}

func (j *fakeJournal) Extend(id string, dl time.Time) error {
	j.mu.Lock()
	j.inFlight++
	j.maxPeak = max(j.maxPeak, j.inFlight)
	block := j.block
	j.mu.Unlock()
	if block != nil {
		<-block
	}
	j.mu.Lock()
	j.inFlight--
	j.extends++
	j.lastExtendDeadline = dl
	fail := j.failAll
	j.mu.Unlock()
	if fail {
		return fmt.Errorf("journal: append extend %s: no space left on device", id)
	}
	j.tr.add("journal extend %s", j.tr.rel(dl))
	return nil
}

func (j *fakeJournal) Started(id string, at, dl time.Time) error {
	if j.fail() {
		return fmt.Errorf("journal: append started %s: no space left on device", id)
	}
	j.tr.add("journal started at %s deadline %s", j.tr.rel(at), j.tr.rel(dl))
	return nil
}

func (j *fakeJournal) Revoking(id string) error {
	if j.fail() {
		return fmt.Errorf("journal: append revoking %s: no space left on device", id)
	}
	j.tr.add("journal revoking")
	return nil
}

func (j *fakeJournal) Revoked(id string, at time.Time) error {
	j.mu.Lock()
	fail := j.failAll || j.failRevoked > 0
	if j.failRevoked > 0 {
		j.failRevoked--
	}
	j.mu.Unlock()
	if fail {
		return fmt.Errorf("journal: append revoked %s: no space left on device", id)
	}
	j.tr.add("journal revoked at %s", j.tr.rel(at))
	return nil
}

func (j *fakeJournal) Replay(r journal.Replay) error {
	if j.fail() {
		return fmt.Errorf("journal: append replay: no space left on device")
	}
	j.tr.add("journal replay %x until %s", r.Digest[:2], j.tr.rel(r.Expires))
	return nil
}

func (j *fakeJournal) Forgotten(id string, at time.Time) error {
	if j.fail() {
		return fmt.Errorf("journal: append revoked %s: no space left on device", id)
	}
	j.tr.add("journal forgotten at %s", j.tr.rel(at))
	return nil
}

type fakeFirewall struct {
	tr       *trace
	mu       sync.Mutex
	failures int // Revoke fails this many times
}

func (f *fakeFirewall) Name() string { return "fake" }
func (f *fakeFirewall) Grant(ctx context.Context, g firewall.Grant, now time.Time) error {
	f.tr.add("fw grant %s %v until %s", g.Src, g.Ports, f.tr.rel(g.Deadline))
	return nil
}
func (f *fakeFirewall) Revoke(ctx context.Context, g firewall.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		f.tr.add("fw revoke %s failed", g.Src)
		return fmt.Errorf("netlink: operation not permitted")
	}
	f.tr.add("fw revoke %s", g.Src)
	return nil
}

// fakeCommands records commands; a command takes duration of (bubble)
// time, and results can be scripted per command text. Marked commands
// leave the files command's wrapper leaves, dated with bubble time.
type fakeCommands struct {
	tr       *trace
	duration time.Duration
	mu       sync.Mutex
	deny     bool
	fails    map[string]int // command -> remaining failures
	output   string         // what a failing command prints
}

func (c *fakeCommands) Allow(door string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.deny
}
func (c *fakeCommands) Run(ctx context.Context, door, cmd string, env ...string) command.Result {
	return c.run(door, cmd, "")
}
func (c *fakeCommands) RunMarked(ctx context.Context, door, cmd, marker string, env ...string) command.Result {
	if err := os.WriteFile(marker+".pid", nil, 0o600); err != nil {
		return command.Result{Cmd: cmd, ExitCode: -1, Err: fmt.Errorf("%w: %v", command.ErrNoMarker, err)}
	}
	os.Remove(marker)
	return c.run(door, cmd, marker)
}
func (c *fakeCommands) run(door, cmd, marker string) command.Result {
	c.tr.add("run %s: %s", door, cmd)
	time.Sleep(c.duration)
	c.mu.Lock()
	rc, out := 0, ""
	if c.fails[cmd] > 0 {
		c.fails[cmd]--
		rc, out = 1, c.output
	}
	c.mu.Unlock()
	if marker != "" {
		writeMark(marker, rc, time.Now())
		os.Remove(marker + ".pid")
	}
	return command.Result{Cmd: cmd, ExitCode: rc, Output: out}
}

func writeMark(marker string, rc int, at time.Time) {
	os.WriteFile(marker, []byte(fmt.Sprintf("%d\n", rc)), 0o600)
	os.Chtimes(marker, at, at)
}

// fakeMarks reads real marker files, except for wrappers a test says
// are still running (left by a "killed" daemon): running[marker] is when
// that command finishes.
type fakeMarks struct {
	tr      *trace
	mu      sync.Mutex
	running map[string]time.Time
}

func (f *fakeMarks) ReadMark(marker string) command.Mark {
	f.mu.Lock()
	end, ok := f.running[marker]
	f.mu.Unlock()
	if ok && time.Now().Before(end) {
		return command.Mark{State: command.Running, Pid: 4242}
	}
	return command.ReadMark(marker)
}

func (f *fakeMarks) WaitMark(ctx context.Context, marker string, until time.Time) command.Mark {
	f.mu.Lock()
	end, ok := f.running[marker]
	f.mu.Unlock()
	if !ok {
		return command.ReadMark(marker)
	}
	wake := end
	if until.Before(end) {
		wake = until
	}
	select {
	case <-ctx.Done():
		return command.Mark{State: command.Running, Pid: 4242}
	case <-time.After(time.Until(wake)):
	}
	f.mu.Lock()
	delete(f.running, marker)
	f.mu.Unlock()
	if until.Before(end) {
		f.tr.add("killed orphan at %s", f.tr.rel(time.Now()))
		os.Remove(marker + ".pid")
		return command.Mark{State: command.Lost, Killed: true}
	}
	f.tr.add("orphan finished at %s", f.tr.rel(time.Now()))
	writeMark(marker, 0, time.Now())
	os.Remove(marker + ".pid")
	return command.ReadMark(marker)
}

func (f *fakeMarks) RemoveMark(marker string) { command.RemoveMark(marker) }

type rig struct {
	t     *testing.T
	tr    *trace
	j     *fakeJournal
	fw    *fakeFirewall
	cmds  *fakeCommands
	marks *fakeMarks
	log   *syncbuf.Buffer
	dir   string
	opts  Options
	m     *Manager
}

// bubble runs f in a synctest bubble with a fresh rig, and closes the
// rig's manager at the end.
func bubble(t *testing.T, f func(t *testing.T, r *rig), tweak ...func(*Options)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, tweak...)
		f(t, r)
		r.m.Close(context.Background())
		synctest.Wait()
	})
}

func newRig(t *testing.T, tweak ...func(*Options)) *rig {
	tr := &trace{t0: time.Now()}
	r := &rig{t: t, tr: tr,
		j:     &fakeJournal{tr: tr},
		fw:    &fakeFirewall{tr: tr},
		cmds:  &fakeCommands{tr: tr, fails: map[string]int{}},
		marks: &fakeMarks{tr: tr, running: map[string]time.Time{}},
		log:   &syncbuf.Buffer{},
		dir:   t.TempDir(),
	}
	r.opts = Options{Journal: r.j, Firewall: r.fw, Commands: r.cmds, Marks: r.marks,
		MarkerDir: r.dir, RetryBase: time.Second, RetryMax: 8 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: r.log, Level: hclog.Debug})}
	for _, f := range tweak {
		f(&r.opts)
	}
	r.m = New(r.opts)
	return r
}

// restart is a new manager on the same fakes and marker directory, as
// after a crash of the first (which is closed without revoking).
func (r *rig) restart() {
	r.m.Close(context.Background())
	synctest.Wait()
	r.m = New(r.opts)
}

// settle waits until every goroutine of the manager is blocked (on a
// timer, a retry back-off or the fakes).
func (r *rig) settle() { synctest.Wait() }

func (r *rig) advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (r *rig) expect(want ...string) {
	r.t.Helper()
	got := r.tr.all()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		r.t.Fatalf("trace:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (r *rig) state(id string) string {
	for _, g := range r.m.List() {
		if g.ID == id {
			return g.State
		}
	}
	return "gone"
}
