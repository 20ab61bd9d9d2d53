package grant

import (
	"fmt"
	"github.com/sesame-knock/sesame/core/event"
	"time"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/journal"
)

// Resume takes over grants a previous run journaled and did not revoke.
// Call it before capture starts; it does not block on commands.
//
//   - A grant whose stop was interrupted is revoked now; the stop runs
//     again unless its marker shows it finished with status 0.
//   - A grant whose start command had not been journaled as finished
//     waits for that start if it is still running (killing it once its
//     grant is CommandLimit old); its deadline then runs from when the
//     start finished (its marker's time), or from now when nothing shows
//     when (knockd closes cmd_timeout after the start, and the start may
//     have just finished). A start that never ran is not undone.
//   - Other grants keep their journaled deadline, overdue ones are
//     revoked now.
//
// No resumed grant is given more than its door's timeout from now: a
// deadline journaled while the wall clock was ahead is cut back, and the
// cut is logged.
func (m *Manager) Resume(recs []journal.Record, doors []*config.Door) {
	now := m.clock.Now()
	timeouts := make(map[string]time.Duration)
	for _, d := range doors {
		if _, ok := timeouts[d.Name]; !ok {
			timeouts[d.Name] = d.GrantTimeout()
		}
	}
	for _, r := range recs {
		timeout := r.Timeout
		if timeout <= 0 {
			timeout = timeouts[r.Door]
		}
		if timeout <= 0 {
			timeout = max(r.Deadline.Sub(r.Start), 0)
		}
		e := newEntry(r, timeout)
		e.persisted = r.Deadline
		e.interrupted = r.RevokeStarted
		e.absolute = r.Origin != ""
		e.isJournaled = true
		close(e.journaled)
		m.log.Info(fmt.Sprintf("%s: %s: resuming grant %s", r.Source, r.Door, r.ID), m.fields(e, event.Replay)...)
		m.mu.Lock()
		m.byID[r.ID] = e
		if old := m.byKey[e.k]; old == nil || old.rec.Deadline.Before(r.Deadline) {
			m.byKey[e.k] = e
		}
		switch {
		case r.RevokeStarted:
			e.state = Active
			m.startRevokeLocked(e, "replay")
		case r.StartPending:
			e.state = Starting
			m.goTracked(func() { m.resumeStart(e, now) })
		default:
			e.state = Active
			left := m.clampLocked(e, r.Deadline.Sub(now), now)
			e.rec.Deadline = now.Add(left)
			if left <= 0 {
				m.startRevokeLocked(e, "replay")
				break
			}
			m.scheduleLocked(e)
			e.persisting = true
			m.goTracked(func() {
				m.applyNative(e)
				m.persistLoop(e)
			})
		}
		m.mu.Unlock()
	}
}

// clampLocked bounds a resumed grant's remaining time by its timeout,
// logging a cut.
func (m *Manager) clampLocked(e *entry, left time.Duration, now time.Time) time.Duration {
	if left > e.timeout {
		m.log.Warn(fmt.Sprintf("%s: %s: resumed grant %s had %v left, more than its timeout (%v): the clock was stepped; closing it at %s",
			e.rec.Source, e.rec.Door, e.rec.ID, left.Round(time.Millisecond), e.timeout, now.Add(e.timeout).UTC().Format(time.RFC3339)),
			m.fields(e, event.Clamp)...)
		return e.timeout
	}
	return max(left, 0)
}

// resumeStart settles a resumed grant whose start command had not been
// journaled as finished, then makes it Active (or revokes it).
func (m *Manager) resumeStart(e *entry, resumed time.Time) {
	mk := m.marker(e.rec.ID, startSuffix)
	mark := command.Mark{State: command.Lost} // no markers: nothing to go by
	if mk != "" {
		mark = m.marks.ReadMark(mk)
	}
	if mark.State == command.Running {
		// Until its grant is CommandLimit old, as the runner would have
		// allowed, but never longer than CommandLimit from now.
		until := e.rec.Start.Add(m.opts.CommandLimit)
		if lim := resumed.Add(m.opts.CommandLimit); until.After(lim) || until.Before(e.rec.Start) {
			until = lim
		}
		m.log.Info(fmt.Sprintf("%s: %s: start command still running after the restart (pid %d); waiting for it before anything else", e.rec.Source, e.rec.Door, mark.Pid), m.fields(e, event.Replay)...)
		mark = m.marks.WaitMark(m.ctx, mk, until)
		if m.ctx.Err() != nil {
			return
		}
		if mark.Killed {
			m.log.Warn(fmt.Sprintf("%s: %s: killed the start command left running by the previous run (over %v)", e.rec.Source, e.rec.Door, m.opts.CommandLimit), m.fields(e, event.Replay)...)
		}
	}
	now := m.clock.Now()
	var finish time.Time
	switch {
	case mark.State == command.NotRun:
		// Journaled, then the daemon died before launching it.
		m.log.Info(fmt.Sprintf("%s: %s: the start command never ran; nothing to undo", e.rec.Source, e.rec.Door), m.fields(e, event.Replay)...)
		m.mu.Lock()
		e.noStop = true
		e.state = Active
		m.startRevokeLocked(e, "replay")
		m.mu.Unlock()
		return
	case mark.State == command.Done && !mark.Killed:
		finish = mark.At
		m.log.Info(fmt.Sprintf("%s: %s: start command had finished before the restart (status %d)", e.rec.Source, e.rec.Door, mark.Status), m.fields(e, event.Replay)...)
	default:
		// Lost or killed: it may have finished just now.
		finish = now
		if !mark.Killed {
			m.log.Info(fmt.Sprintf("%s: %s: the start command left no status (killed with the daemon before it ran, or no room to record it); its deadline runs from now", e.rec.Source, e.rec.Door), m.fields(e, event.Replay)...)
		}
	}
	m.mu.Lock()
	until := finish.Add(e.timeout)
	if e.absolute {
		until = e.rec.Deadline // a fleet grant keeps its origin's deadline
	}
	left := m.clampLocked(e, until.Sub(now), now)
	m.mu.Unlock()
	m.activate(e, finish, now.Add(left))
}
