package grant

import (
	"errors"
	"fmt"
	"github.com/sesame-knock/sesame/core/event"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/journal"
)

// startRevokeLocked takes e out of the live set and revokes it on a
// tracked goroutine; a grant still starting is revoked once applied.
func (m *Manager) startRevokeLocked(e *entry, why string) {
	switch e.state {
	case Starting:
		if !e.revokeNow {
			e.revokeNow, e.revokeWhy = true, why
		}
		return
	case Active:
	default:
		return // already being revoked
	}
	e.state = Revoking
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
	}
	if m.byKey[e.k] == e {
		delete(m.byKey, e.k)
	}
	if why == "expire" {
		msg := fmt.Sprintf("%s: %s: command timeout", e.rec.Source, e.rec.Door)
		if e.rec.StopCmd == "" {
			msg = fmt.Sprintf("%s: %s: grant expired", e.rec.Source, e.rec.Door)
		}
		m.log.Info(msg, m.fields(e, event.Expire)...)
	}
	m.goTracked(func() { m.revoke(e, why) })
}

// revoke runs the stop command and the native revoke, each until it
// succeeds, and then records the revocation. It returns early, leaving
// the grant journaled for the next start, only when the manager closes.
func (m *Manager) revoke(e *entry, why string) {
	m.mu.Lock()
	stop := e.rec.StopCmd
	if e.noStop {
		stop = ""
	}
	m.mu.Unlock()
	mk := m.marker(e.rec.ID, stopSuffix)
	if stop != "" && mk != "" && e.interrupted {
		mark := m.marks.ReadMark(mk)
		if mark.State == command.Running {
			m.log.Info(fmt.Sprintf("%s: %s: stop command still running after the restart (pid %d); waiting for it", e.rec.Source, e.rec.Door, mark.Pid), m.fields(e, event.Replay)...)
			mark = m.marks.WaitMark(m.ctx, mk, m.clock.Now().Add(m.opts.CommandLimit))
			if m.ctx.Err() != nil {
				return
			}
		}
		switch {
		case mark.OK():
			// It ran to completion while no daemon watched.
			m.log.Info(fmt.Sprintf("%s: %s: stop command had finished before the restart (status 0)", e.rec.Source, e.rec.Door), m.fields(e, event.Replay)...)
			stop = ""
		case mark.State == command.Done:
			m.log.Warn(fmt.Sprintf("%s: %s: stop command had failed before the restart (status %d); running it again", e.rec.Source, e.rec.Door, mark.Status), m.fields(e, event.Replay)...)
		}
	}
	if stop != "" {
		if j := m.opts.Journal; j != nil {
			if err := j.Revoking(e.rec.ID); err != nil {
				m.log.Error(fmt.Sprintf("%s: %s: journal: %v", e.rec.Source, e.rec.Door, err), m.fields(e, event.Revoke)...)
			}
		}
		ok, forgotten := m.untilDone(e, "stop command", func() error {
			var res command.Result
			if mk != "" {
				res = m.opts.Commands.RunMarked(m.ctx, e.rec.Door, stop, mk)
				if errors.Is(res.Err, command.ErrNoMarker) {
					// No room for the marker: run it unmarked rather than
					// leave the door open.
					res = m.opts.Commands.Run(m.ctx, e.rec.Door, stop)
				}
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
		if forgotten {
			m.record(e, "forgotten")
			return
		}
		if !ok {
			return
		}
	}
	if fw := m.firewall(); len(e.rec.Open) > 0 && fw != nil {
		ok, forgotten := m.untilDone(e, "native revoke", func() error {
			m.fwMu.Lock()
			defer m.fwMu.Unlock()
			return fw.Revoke(m.ctx, nativeGrant(e))
		})
		if forgotten {
			m.record(e, "forgotten")
			return
		}
		if !ok {
			return
		}
	}
	m.record(e, why)
}

// untilDone calls f until it succeeds (ok), an admin forgets the grant
// (forgotten), or the manager closes (neither). Failures are logged
// loudly and retried with a delay doubling from RetryBase to RetryMax.
func (m *Manager) untilDone(e *entry, what string, f func() error) (ok, forgotten bool) {
	delay := m.opts.RetryBase
	for attempt := 1; ; attempt++ {
		err := f()
		if err != nil && m.ctx.Err() != nil {
			return false, false
		}
		m.mu.Lock()
		if err == nil {
			if e.state == StopFailing {
				e.state = Revoking
			}
			e.lastErr = ""
			m.mu.Unlock()
			if attempt > 1 {
				m.log.Info(fmt.Sprintf("%s: %s: %s succeeded at attempt %d", e.rec.Source, e.rec.Door, what, attempt), m.fields(e, event.Revoke)...)
			}
			return true, false
		}
		e.state = StopFailing
		e.attempts++
		e.lastErr = fmt.Sprintf("%s: %v", what, err)
		forget := e.forget
		m.settleLocked(e)
		m.mu.Unlock()
		if forget {
			return false, true
		}
		m.log.Error(fmt.Sprintf("%s: %s: %s failed (attempt %d): %v; retrying in %v. What the grant opened stays open until it succeeds; after fixing it by hand, `sesame revoke --forget %s` ends the grant",
			e.rec.Source, e.rec.Door, what, attempt, err, delay, e.rec.ID), m.fields(e, event.Revoke, "attempt", attempt, "error", err.Error())...)
		if !m.sleep(delay, e.poke) {
			return false, false
		}
		m.mu.Lock()
		forget = e.forget
		m.mu.Unlock()
		if forget {
			return false, true
		}
		delay = min(2*delay, m.opts.RetryMax)
	}
}

// record journals that e was revoked (or forgotten), retrying while the
// journal fails (a full disk): while this daemon runs, what it knows in
// memory, that the stop ran, is never lost to a restart. Only a daemon
// that stops before the journal takes the record leaves the grant
// journaled; the next start then reruns the stop unless its marker shows
// it finished.
func (m *Manager) record(e *entry, why string) {
	forgotten := why == "forgotten"
	write := func() error {
		j := m.opts.Journal
		if j == nil {
			return nil
		}
		var err error
		if forgotten {
			err = j.Forgotten(e.rec.ID, m.clock.Now())
		} else {
			err = j.Revoked(e.rec.ID, m.clock.Now())
		}
		if errors.Is(err, journal.ErrUnknownGrant) {
			return nil // recorded already
		}
		return err
	}
	delay := m.opts.RetryBase
	for attempt := 1; ; attempt++ {
		err := write()
		if err == nil {
			break
		}
		m.mu.Lock()
		e.state = Unrecorded
		e.lastErr = "journal: " + err.Error()
		m.unrecorded[e] = true
		m.settleLocked(e)
		m.mu.Unlock()
		if attempt == 1 {
			m.log.Error(fmt.Sprintf("%s: %s: revocation not journaled: %v; retrying until it is (a restart before then would run the stop command again)",
				e.rec.Source, e.rec.Door, err), m.fields(e, event.Revoke)...)
		}
		if !m.sleep(delay, e.poke) {
			// Shutting down: one last try.
			if err := write(); err != nil {
				m.log.Error(fmt.Sprintf("%s: %s: revocation still not journaled at shutdown: %v; the next start runs the stop command again unless its marker shows it finished",
					e.rec.Source, e.rec.Door, err), m.fields(e, event.Revoke)...)
				return
			}
			break
		}
		delay = min(2*delay, m.opts.RetryMax)
	}
	if mk := m.marker(e.rec.ID, stopSuffix); mk != "" {
		m.marks.RemoveMark(mk)
	}
	if mk := m.marker(e.rec.ID, startSuffix); mk != "" {
		m.marks.RemoveMark(mk)
	}
	m.mu.Lock()
	m.forgetLocked(e)
	m.mu.Unlock()
	m.shareEnded(e, why)
	if forgotten {
		m.log.Warn(fmt.Sprintf("%s: %s: grant forgotten by an admin; its stop never succeeded", e.rec.Source, e.rec.Door),
			m.fields(e, event.Revoke, "reason", "forgotten", "status", "forgotten")...)
		return
	}
	m.log.Info(fmt.Sprintf("%s: %s: access revoked", e.rec.Source, e.rec.Door), m.fields(e, event.Revoke, "reason", why, "status", "done")...)
}

// settleLocked lets a grant waiting on e (a re-knock after a reload)
// go ahead: e's revocation finished or has failed once.
func (m *Manager) settleLocked(e *entry) {
	if !e.isSettled {
		e.isSettled = true
		close(e.settled)
	}
}

// journalWorks is called after a journal write succeeded: revocations
// the journal refused (a full disk) are retried now rather than after
// their back-off.
func (m *Manager) journalWorks() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for e := range m.unrecorded {
		poke(e)
	}
}

// forgetLocked removes e from the manager.
func (m *Manager) forgetLocked(e *entry) {
	delete(m.unrecorded, e)
	if m.byKey[e.k] == e {
		delete(m.byKey, e.k)
	}
	if m.byID[e.rec.ID] == e {
		delete(m.byID, e.rec.ID)
		m.settleLocked(e)
		m.journaledLocked(e)
		close(e.done)
	}
}
