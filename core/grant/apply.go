package grant

import (
	"errors"
	"fmt"
	"github.com/sesame-knock/sesame/core/event"
	"path/filepath"
	"time"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Marker names in Options.MarkerDir.
const (
	startSuffix = ".started"
	stopSuffix  = ".stopped"
)

func (m *Manager) marker(id, suffix string) string {
	if m.opts.MarkerDir == "" {
		return ""
	}
	return filepath.Join(m.opts.MarkerDir, id+suffix)
}

// begin journals and applies a new grant.
func (m *Manager) begin(e *entry) {
	if !m.wait(e.after) {
		m.mu.Lock()
		m.forgetLocked(e)
		m.mu.Unlock()
		return
	}
	applied := false
	if j := m.opts.Journal; j != nil {
		var err error
		if m.kernelBounded(e) {
			// The kernel ends this grant at its deadline on its own, so it
			// need not wait for the record: a crash before the record is
			// durable leaves an element (or rule) that lapses at the
			// deadline, and the restart's Reconcile removes it sooner.
			done := make(chan error, 1)
			go func(r journal.Record) { done <- j.Grant(r) }(e.rec)
			m.applyNative(e)
			applied, err = true, <-done
		} else {
			err = j.Grant(e.rec)
		}
		if err != nil {
			// Without a durable record a crash could leak this grant:
			// refuse it (undoing the native grant already applied), keep
			// serving the ones already journaled.
			m.log.Error(fmt.Sprintf("%s: %s: grant refused: %v", e.rec.Source, e.rec.Door, err), m.fields(e, event.Refused)...)
			m.refuseApplied(e, applied)
			return
		}
		m.journalWorks()
	}
	m.mu.Lock()
	e.persisted = e.rec.Deadline
	m.journaledLocked(e)
	m.mu.Unlock()
	m.shareGranted(e)
	m.log.Info(fmt.Sprintf("%s: %s: access granted", e.rec.Source, e.rec.Door), m.fields(e, event.Grant, "ports", knock.FormatSequence(e.rec.Open), "stop_command", e.rec.StopCmd)...)
	if !applied {
		m.applyNative(e)
	}
	if e.startCmd == "" {
		m.activate(e, time.Time{}, time.Time{})
		return
	}
	mk := m.marker(e.rec.ID, startSuffix)
	var res command.Result
	if mk != "" {
		res = m.opts.Commands.RunMarked(m.ctx, e.rec.Door, e.startCmd, mk)
	} else {
		res = m.opts.Commands.Run(m.ctx, e.rec.Door, e.startCmd)
	}
	if errors.Is(res.Err, command.ErrNoMarker) {
		// Not run: a start that a crash could orphan untracked is not
		// started. Nothing ran, so the stop has nothing to undo.
		m.log.Error(fmt.Sprintf("%s: %s: grant refused: %v", e.rec.Source, e.rec.Door, res.Err), m.fields(e, event.Refused)...)
		m.mu.Lock()
		e.noStop = true
		e.state = Active
		m.startRevokeLocked(e, "refused")
		m.mu.Unlock()
		return
	}
	if m.ctx.Err() != nil && res.ExitCode == -1 && res.Err != nil {
		// Shutting down before the start ran: the journal keeps the grant
		// with its start pending, and the next start sorts it out.
		return
	}
	if why := startFailure(res); why != "" {
		m.mu.Lock()
		e.startErr = why
		m.mu.Unlock()
	}
	// knockd's cmd_timeout runs from the end of the start command; a
	// fleet grant keeps its origin's deadline.
	finish := m.clock.Now()
	if e.absolute {
		m.activate(e, finish, time.Time{})
		return
	}
	m.activate(e, finish, finish.Add(m.timeout(e)))
}

// kernelBounded reports whether e may be applied while its journal
// record is being written rather than after: e only grants natively (no
// start command: commands stay journal-first), through a firewall whose
// grants lapse in the kernel at their deadline (KernelExpiry), and
// carries no SPA replay digest (which must be durable before the packet
// has any effect).
func (m *Manager) kernelBounded(e *entry) bool {
	if e.startCmd != "" || len(e.rec.Open) == 0 || !e.rec.Replay.IsZero() {
		return false
	}
	k, ok := m.firewall().(KernelExpiry)
	return ok && k.ExpiresInKernel()
}

// refuseApplied forgets e, whose journal record could not be written,
// and revokes its native grant when it was applied (once: should the
// revoke fail, the kernel still ends it at its deadline, and Reconcile,
// which no longer finds it wanted, removes it sooner). fwMu is held
// across both so that Reconcile sees e either wanted and applied, or
// neither.
func (m *Manager) refuseApplied(e *entry, applied bool) {
	fw := m.firewall()
	if !applied || fw == nil {
		m.mu.Lock()
		m.forgetLocked(e)
		m.mu.Unlock()
		return
	}
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	m.mu.Lock()
	m.forgetLocked(e)
	m.mu.Unlock()
	if err := fw.Revoke(m.ctx, nativeGrant(e)); err != nil {
		m.log.Error(fmt.Sprintf("%s: %s: native revoke of a refused grant: %v (the kernel ends it at %s)", e.rec.Source, e.rec.Door, err,
			e.rec.Deadline.UTC().Format(time.RFC3339)), m.fieldsNow(e, event.Refused)...)
	}
}

func (m *Manager) timeout(e *entry) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.timeout
}

// activate makes e Active with deadline (or its current one when zero,
// or a later one asked for while it was starting), journals a finished
// start (finish not zero), and keeps its native grant and journal in
// step.
func (m *Manager) activate(e *entry, finish, deadline time.Time) {
	m.mu.Lock()
	if deadline.IsZero() {
		deadline = e.rec.Deadline
	}
	if e.extendTo.After(deadline) {
		deadline = e.extendTo
	}
	e.rec.Deadline = deadline
	e.rec.StartPending = false
	e.state = Active
	if e.revokeNow {
		m.startRevokeLocked(e, e.revokeWhy)
		m.mu.Unlock()
		return
	}
	// This goroutine writes the deadline; extensions meanwhile only move
	// it in memory.
	e.persisting = true
	if !finish.IsZero() {
		e.persisted = deadline
	} else {
		m.scheduleLocked(e)
	}
	m.mu.Unlock()
	if !finish.IsZero() {
		m.journalStarted(e, finish, deadline)
		// The revoke timer is armed once the Started record that dates
		// the deadline is written: a deadline already past (a start that
		// finished long ago) is revoked after that record, never before
		// it. A revoke asked for meanwhile has left Active.
		m.mu.Lock()
		if e.state == Active {
			m.scheduleLocked(e)
		}
		m.mu.Unlock()
		m.applyNative(e)
		m.shareExtended(e, deadline)
	}
	m.persistLoop(e)
}

// journalStarted journals that e's start finished at finish, with the
// deadline it runs to, and removes the start's marker once the journal
// holds it (a restart dates the deadline from the marker otherwise).
func (m *Manager) journalStarted(e *entry, finish, deadline time.Time) {
	mk := m.marker(e.rec.ID, startSuffix)
	if j := m.opts.Journal; j != nil {
		if err := j.Started(e.rec.ID, finish, deadline); err != nil {
			// The start's marker stays: a restart dates the deadline
			// from it.
			m.log.Error(fmt.Sprintf("%s: %s: journal: %v", e.rec.Source, e.rec.Door, err), m.fieldsNow(e, event.Grant)...)
			m.mu.Lock()
			e.persisted = time.Time{}
			m.mu.Unlock()
			return
		}
	}
	if mk != "" {
		m.marks.RemoveMark(mk)
	}
}

// applyNative (re)applies e's native grant with its current deadline; a
// repeat is an extension in the backend.
func (m *Manager) applyNative(e *entry) {
	fw := m.firewall()
	if len(e.rec.Open) == 0 || fw == nil {
		return
	}
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	m.mu.Lock()
	g := nativeGrant(e)
	state := e.state
	m.mu.Unlock()
	if state != Starting && state != Active {
		return // a revoke overtook this (re)apply
	}
	if err := fw.Grant(m.ctx, g, m.clock.Now()); err != nil {
		// The reconcile loop puts back what is missing.
		m.log.Error(fmt.Sprintf("%s: %s: native grant: %v", e.rec.Source, e.rec.Door, err), m.fieldsNow(e, event.Grant)...)
	}
}

func nativeGrant(e *entry) firewall.Grant {
	return firewall.Grant{ID: e.rec.ID, Door: e.rec.Door, Src: e.rec.Source, Ports: e.rec.Open, Deadline: e.rec.Deadline}
}

// extendLocked moves e's deadline to now plus timeout (the door's, as it
// is now). It only changes memory and the timer; the journal and the
// firewall follow on e's one writer (persistLoop), so a flood of repeat
// knocks costs no goroutine, fsync or firewall call per knock.
func (m *Manager) extendLocked(e *entry, now time.Time, timeout time.Duration) Outcome {
	e.timeout = timeout
	return m.extendToLocked(e, now.Add(timeout), now)
}

// extendToLocked moves e's deadline to dl when that is later, as
// extendLocked does.
func (m *Manager) extendToLocked(e *entry, dl, now time.Time) Outcome {
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
		if m.lines.Allow("extend\x00"+e.rec.Door, now) {
			m.log.Info(fmt.Sprintf("%s: %s: grant extended until %s", e.rec.Source, e.rec.Door, dl.Format(time.RFC3339)), m.fields(e, event.Extend)...)
		}
		if !e.persisting {
			e.persisting = true
			m.goTracked(func() { m.persistLoop(e) })
		}
		return Extended
	}
	return Ignored
}

// persistLoop is e's one writer of extensions: it journals e's latest
// deadline and updates its native grant, at most once per extendEvery,
// until the journal holds the deadline in memory. The caller has set
// e.persisting.
func (m *Manager) persistLoop(e *entry) {
	for {
		m.mu.Lock()
		now := m.clock.Now()
		dl := e.rec.Deadline
		if e.state != Active || m.closed || dl.Equal(e.persisted) {
			e.persisting = false
			m.mu.Unlock()
			return
		}
		wait := e.lastWrite.Add(m.extendEvery(e.timeout)).Sub(now)
		if wait <= 0 {
			e.lastWrite = now
		}
		m.mu.Unlock()
		if wait > 0 {
			if !m.sleep(wait, nil) {
				m.mu.Lock()
				e.persisting = false
				m.mu.Unlock()
				return
			}
			continue
		}
		m.applyNative(e)
		if j := m.opts.Journal; j != nil {
			if err := j.Extend(e.rec.ID, dl); err != nil {
				// The journal keeps the earlier deadline: after a crash the
				// grant would close early, never late. The next extension
				// tries again.
				m.mu.Lock()
				failed := e.state == Active
				e.persisting = false
				m.mu.Unlock()
				if failed {
					m.log.Error(fmt.Sprintf("%s: %s: journal extend: %v", e.rec.Source, e.rec.Door, err), m.fieldsNow(e, event.Extend)...)
				}
				return
			}
		}
		m.mu.Lock()
		e.persisted = dl
		m.mu.Unlock()
		m.shareExtended(e, dl)
	}
}

// extendEvery is the least time between two writes of one grant's
// extensions: Options.ExtendEvery, or a quarter of the grant's timeout
// when that is longer (a crash then loses at most that much of an
// extension: the grant closes early after the restart, never late), and
// never more than half the timeout, so a native grant's kernel timeout is
// renewed long before it would run out.
func (m *Manager) extendEvery(timeout time.Duration) time.Duration {
	return min(max(m.opts.ExtendEvery, timeout/4), timeout/2)
}

// scheduleLocked (re)arms e's revoke timer at its deadline. The timer
// runs on the monotonic clock and never further out than the door's
// timeout: a deadline that a stepped wall clock put further away is cut
// back (and logged).
func (m *Manager) scheduleLocked(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
	}
	now := m.clock.Now()
	d := max(e.rec.Deadline.Sub(now), 0)
	if d > e.timeout {
		m.log.Warn(fmt.Sprintf("%s: %s: deadline %s is more than the door's timeout (%v) away; closing at %s",
			e.rec.Source, e.rec.Door, e.rec.Deadline.UTC().Format(time.RFC3339), e.timeout, now.Add(e.timeout).UTC().Format(time.RFC3339)),
			m.fields(e, event.Clamp)...)
		d = e.timeout
		e.rec.Deadline = now.Add(d)
	}
	e.gen++
	gen := e.gen
	e.timer = m.clock.AfterFunc(d, func() { m.expire(e, gen) })
}

// expire is e's timer: it revokes e unless the timer was re-armed (an
// extension) since it was set. It compares no times, so a wall-clock
// step cannot postpone it.
func (m *Manager) expire(e *entry, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.gen != gen || e.state != Active || m.closed {
		return
	}
	m.startRevokeLocked(e, "expire")
}

// startFailure says, for sesame grants, how a start command failed: its
// error or exit status and the first line of its output; "" when it
// succeeded.
func startFailure(res command.Result) string {
	var why string
	switch {
	case res.Err != nil:
		why = res.Err.Error()
	case res.ExitCode != 0:
		why = fmt.Sprintf("exit status %d", res.ExitCode)
	default:
		return ""
	}
	if l := command.FirstLine(res.Output, 200); l != "" {
		why += ": " + l
	}
	return why
}
