package grant

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/journal"
)

func rec(id string, start, deadline time.Time) journal.Record {
	return journal.Record{ID: id, Door: "ssh", Source: src4, StopCmd: "close " + id, Start: start, Deadline: deadline, Timeout: 10 * time.Second}
}

func TestResume(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		done := rec("done", now.Add(-time.Minute), now.Add(-30*time.Second))
		done.RevokeStarted = true
		writeMark(filepath.Join(r.dir, "done.stopped"), 0, now)
		cut := rec("cut", now.Add(-time.Minute), now.Add(time.Minute))
		cut.RevokeStarted = true
		cut.Source = netip.MustParseAddr("192.0.2.9")
		later := rec("later", now.Add(-5*time.Second), now.Add(5*time.Second))
		later.Source = netip.MustParseAddr("192.0.2.8")
		r.m.Resume([]journal.Record{
			rec("overdue", now.Add(-time.Minute), now.Add(-time.Second)),
			done, cut, later,
		}, []*config.Door{cmdDoor()})
		r.settle()
		if r.tr.count("run ssh: close overdue") != 1 {
			t.Errorf("overdue grant not revoked at once: %q", r.tr.all())
		}
		if r.tr.count("run ssh: close done") != 0 {
			t.Errorf("a stop that had finished ran again: %q", r.tr.all())
		}
		if r.tr.count("run ssh: close cut") != 1 {
			t.Errorf("an interrupted stop without a marker was not rerun: %q", r.tr.all())
		}
		if r.tr.count("run ssh: close later") != 0 {
			t.Fatal("future grant revoked early")
		}
		if r.tr.count("journal revoked") != 3 {
			t.Errorf("revoked records: %q", r.tr.all())
		}
		// A re-knock of a resumed grant extends it.
		if got := r.m.Open(&config.Door{Name: "ssh", CmdTimeout: 10 * time.Second,
			Start: config.Command{Text: "open %IP%", Set: true}, Stop: config.Command{Text: "close later", Set: true}},
			later.Source, time.Now()); got != Extended {
			t.Errorf("re-knock of resumed grant = %v", got)
		}
		r.advance(5 * time.Second)
		if r.tr.count("run ssh: close later") != 0 {
			t.Error("extended resumed grant revoked at its old deadline")
		}
		r.advance(5 * time.Second)
		if r.tr.count("run ssh: close later") != 1 {
			t.Errorf("resumed grant not revoked: %q", r.tr.all())
		}
	})
}

// A stop that failed before the restart (its marker holds a non-zero
// status) is run again, not taken for done.
func TestResumedFailedStopRunsAgain(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		g := rec("failed", now.Add(-time.Minute), now.Add(-30*time.Second))
		g.RevokeStarted = true
		writeMark(filepath.Join(r.dir, "failed.stopped"), 1, now.Add(-20*time.Second))
		r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
		r.settle()
		r.expect("journal revoking", "run ssh: close failed", "journal revoked at +0s")
	})
}

// The start command was still running when the daemon died: the resumed
// grant waits for it, and its deadline runs from the start's end.
func TestResumeWaitsForAnOrphanedStart(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		g := rec("orphan", now.Add(-time.Second), now.Add(9*time.Second))
		g.StartPending = true
		mk := filepath.Join(r.dir, "orphan.started")
		os.WriteFile(mk+".pid", []byte("4242\n"), 0o600)
		r.marks.running[mk] = now.Add(15 * time.Second)
		r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
		r.settle()
		if st := r.state("orphan"); st != "starting" {
			t.Errorf("state %q while the start runs", st)
		}
		r.advance(15*time.Second + 10*time.Second - time.Millisecond)
		if n := r.tr.count("run ssh: close"); n != 0 {
			t.Fatalf("stop ran before the start's end + cmd_timeout: %q", r.tr.all())
		}
		r.advance(time.Millisecond)
		r.expect(
			"orphan finished at +15s",
			"journal started at +15s deadline +25s",
			"journal revoking",
			"run ssh: close orphan",
			"journal revoked at +25s",
		)
		if _, err := os.Stat(mk); err == nil {
			t.Error("start marker left behind")
		}
	})
}

// An orphaned start that runs past the command limit is killed before
// the stop runs.
func TestResumeKillsAStartOverTheLimit(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		g := rec("hung", now.Add(-30*time.Second), now.Add(-20*time.Second))
		g.StartPending = true
		mk := filepath.Join(r.dir, "hung.started")
		os.WriteFile(mk+".pid", []byte("4242\n"), 0o600)
		r.marks.running[mk] = now.Add(time.Hour)
		r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
		r.advance(100 * time.Second)
		// Killed at start + 2 min (+90s); deadline +100s.
		r.expect(
			"killed orphan at +1m30s",
			"journal started at +1m30s deadline +1m40s",
			"journal revoking",
			"run ssh: close hung",
			"journal revoked at +1m40s",
		)
	})
}

func TestResumedStart(t *testing.T) {
	tests := []struct {
		name string
		// mark sets up the start's marker files (nil: none).
		mark func(mk string, now time.Time)
		want []string
	}{
		{"finished while the daemon was down: dated by its marker", func(mk string, now time.Time) {
			writeMark(mk, 0, now.Add(-4*time.Second))
		}, []string{
			"journal started at -4s deadline +6s", "journal revoking", "run ssh: close g", "journal revoked at +6s",
		}},
		{"finished long ago: revoked now", func(mk string, now time.Time) {
			writeMark(mk, 0, now.Add(-time.Minute))
		}, []string{
			"journal started at -1m0s deadline +0s", "journal revoking", "run ssh: close g", "journal revoked at +0s",
		}},
		{"launched, no trace of its end: full timeout from now", func(mk string, now time.Time) {
			os.WriteFile(mk+".pid", []byte("999999999\n"), 0o600)
		}, []string{
			"journal started at +0s deadline +10s", "journal revoking", "run ssh: close g", "journal revoked at +10s",
		}},
		{"never launched: nothing to undo", nil, []string{
			"journal revoked at +0s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, r *rig) {
				now := time.Now()
				// Journaled a second ago, with the knock's deadline.
				g := rec("g", now.Add(-time.Second), now.Add(9*time.Second))
				g.StartPending = true
				if tt.mark != nil {
					tt.mark(filepath.Join(r.dir, "g.started"), now)
				}
				r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
				r.advance(time.Minute)
				got := strings.ReplaceAll(strings.Join(r.tr.all(), "\n"), "+-", "-")
				if got != strings.Join(tt.want, "\n") {
					t.Fatalf("trace:\n  %s\nwant:\n  %s", strings.ReplaceAll(got, "\n", "\n  "), strings.Join(tt.want, "\n  "))
				}
			})
		})
	}
}

// Journals written while the wall clock was an hour ahead: no resumed
// grant gets more than its door's timeout.
func TestResumeClampsShiftedDeadlines(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		ahead := rec("ahead", now.Add(time.Hour), now.Add(time.Hour+10*time.Second))
		startAhead := rec("startahead", now.Add(time.Hour), now.Add(time.Hour+10*time.Second))
		startAhead.Source = netip.MustParseAddr("192.0.2.8")
		startAhead.StartPending = true
		writeMark(filepath.Join(r.dir, "startahead.started"), 0, now.Add(time.Hour+time.Second))
		old := rec("old", now.Add(time.Hour), now.Add(time.Hour+10*time.Second))
		old.Source = netip.MustParseAddr("192.0.2.9")
		old.Timeout = 0 // a record from before timeouts were journaled: the door's
		r.m.Resume([]journal.Record{ahead, startAhead, old}, []*config.Door{cmdDoor()})
		r.advance(10*time.Second - time.Millisecond)
		if n := r.tr.count("run ssh: close"); n != 0 {
			t.Fatalf("revoked early: %q", r.tr.all())
		}
		r.advance(time.Millisecond)
		for _, id := range []string{"ahead", "startahead", "old"} {
			if r.tr.count("run ssh: close "+id) != 1 {
				t.Errorf("%s not revoked at its timeout: %q", id, r.tr.all())
			}
		}
		if n := strings.Count(r.log.String(), "the clock was stepped"); n != 3 {
			t.Errorf("%d clamps logged, want 3:\n%s", n, r.log.String())
		}
	})
}

// A wall clock stepped back while the daemon runs does not hold a door
// open: deadlines run on the monotonic clock.
func TestClockStepBackWhileRunning(t *testing.T) {
	step := &steppedClock{}
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, step.Now())
		r.advance(time.Second)
		step.set(-time.Hour)
		r.advance(9 * time.Second)
		if r.tr.count("run ssh: close") != 1 {
			t.Fatalf("not revoked at its timeout after a step back: %q", r.tr.all())
		}
	}, func(o *Options) { o.Clock = step })
}

// steppedClock is the wall clock without its monotonic reading, shifted
// by an offset a test steps: what a manager sees that trusts wall time.
type steppedClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *steppedClock) set(d time.Duration) {
	c.mu.Lock()
	c.offset = d
	c.mu.Unlock()
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Round(0).Add(c.offset)
}

func (c *steppedClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
