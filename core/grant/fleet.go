package grant

import (
	"context"
	"fmt"
	"time"

	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Sharer shares grants with a fleet (the daemon's fleet service). The
// Manager asks Share, under its lock, whether a new grant made here is
// shared and under which door name the group knows it ("" keeps it
// local); Share must not call the Manager. The Manager journals the
// answer with the grant (journal.Record.Shared), and then reports what
// happens to a shared grant, each call after the journal holds it:
// Granted once the grant is journaled, Extended when its deadline moved
// (at most once per extension write, so a flood of repeat knocks is not
// a flood of calls), Ended once its revocation is journaled (why:
// "expire", "admin", "fleet", "reload", "refused", ...). These three are
// called from the Manager's goroutines and must not block.
//
// A start command without a stop command and without native ports is
// not a grant the Manager tracks, so it is never shared.
type Sharer interface {
	Share(r *Request) string
	Granted(g Grant)
	Extended(id string, deadline time.Time)
	Ended(id, why string)
}

// view is e as a Grant; call it with mu held or for a grant whose
// deadline does not move meanwhile.
func view(e *entry) Grant {
	return Grant{ID: e.rec.ID, Door: e.rec.Door, Source: e.rec.Source, Open: e.rec.Open,
		Ports: knock.FormatSequence(e.rec.Open), StopCmd: e.rec.StopCmd, Start: e.rec.Start,
		Deadline: e.rec.Deadline, Auth: e.rec.Auth, User: e.rec.User, Key: e.rec.Key,
		Origin: e.rec.Origin, Shared: e.rec.Shared}
}

func (m *Manager) shareGranted(e *entry) {
	if sh := m.opts.Sharer; sh != nil && e.rec.Shared != "" {
		m.mu.Lock()
		g := view(e)
		m.mu.Unlock()
		sh.Granted(g)
	}
}

func (m *Manager) shareExtended(e *entry, dl time.Time) {
	if sh := m.opts.Sharer; sh != nil && e.rec.Shared != "" {
		sh.Extended(e.rec.ID, dl)
	}
}

func (m *Manager) shareEnded(e *entry, why string) {
	if sh := m.opts.Sharer; sh != nil && e.rec.Shared != "" {
		sh.Ended(e.rec.ID, why)
	}
}

// journaledLocked closes e.journaled once.
func (m *Manager) journaledLocked(e *entry) {
	if !e.isJournaled {
		e.isJournaled = true
		close(e.journaled)
	}
}

// grantFleet applies a grant received from a fleet (r.ID, r.Deadline and
// r.Origin set): a new grant under the origin's id and deadline, or the
// extension of the one this node already holds under that id. Outcomes
// as Grant's, and Ignored for a request without a valid id, origin or
// deadline, or one whose deadline has passed.
func (m *Manager) grantFleet(r Request, now time.Time) Outcome {
	src := r.Source.Unmap()
	if !journal.ValidID(r.ID) || r.Origin == "" || r.Deadline.IsZero() || !src.IsValid() {
		m.log.Error(fmt.Sprintf("%s: %s: fleet grant refused: id %q, origin %q, deadline %s", src, r.Name, r.ID, r.Origin, r.Deadline),
			event.Event{Kind: event.Refused, Door: r.Name, Source: src, GrantID: r.ID}.Args(event.KeyReason, "malformed", event.KeyOrigin, r.Origin)...)
		return Ignored
	}
	fw := m.firewall()
	native := len(r.Ports) > 0 && fw != nil
	if len(r.Ports) > 0 && fw == nil && m.lines.Allow("nofw\x00"+r.Name, now) {
		m.log.Error("door opens ports but no firewall backend is available", event.KeyDoor, r.Name)
	}
	startCmd, stopCmd := r.StartCmd, r.StopCmd
	if startCmd == "" {
		stopCmd = ""
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Closed
	}
	if e := m.byID[r.ID]; e != nil {
		if e.rec.Origin == "" {
			// This node's own grant, handed back (a re-list): it lives
			// by its own deadline.
			return Extended
		}
		return m.extendToLocked(e, r.Deadline, now)
	}
	if !r.Deadline.After(now) {
		return Ignored
	}
	if startCmd == "" && !native {
		return Ignored
	}
	if !m.allowLocked(r.Name, startCmd, now) {
		if m.lines.Allow("refused\x00"+r.Name, now) {
			m.log.Warn(fmt.Sprintf("%s: %s: fleet grant from %s refused: rate limit reached", src, r.Name, r.Origin),
				event.Event{Kind: event.Refused, Door: r.Name, Source: src, GrantID: r.ID}.Args(event.KeyReason, "rate limit", event.KeyOrigin, r.Origin)...)
		}
		return RateLimited
	}
	rec := journal.Record{ID: r.ID, Door: r.Name, Source: src, StopCmd: stopCmd, Origin: r.Origin,
		Auth: r.Auth.Method, User: r.Auth.User, Key: r.Auth.Key,
		Start: now, Deadline: r.Deadline.UTC(), Timeout: r.Timeout, StartPending: startCmd != ""}
	if native {
		rec.Open = sortedPorts(r.Ports)
		rec.Backend = fw.Name()
	}
	if stopCmd == "" && !native {
		// A start command with nothing to undo: run it, as Grant does.
		m.goTracked(func() { m.opts.Commands.Run(m.ctx, r.Name, startCmd) })
		return RanStart
	}
	e := newEntry(rec, r.Timeout)
	e.startCmd, e.startKnown, e.absolute = startCmd, true, true
	m.byKey[e.k] = e
	m.byID[rec.ID] = e
	m.goTracked(func() { m.begin(e) })
	return Granted
}

// Journaled waits until grant id's record is durable (Grant journals on
// a goroutine of its own), so that a caller can record that it applied
// the grant, after it. Outcomes: nil when the record is durable, or when
// there is no such grant (refused, because the journal failed, or
// ended); ctx's error when ctx ends first.
func (m *Manager) Journaled(ctx context.Context, id string) error {
	m.mu.Lock()
	e := m.byID[id]
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	select {
	case <-e.journaled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RevokeID revokes grant id now, as Revoke does, when match accepts it
// (nil accepts any; it is called with the Manager's lock held and must
// not call the Manager), with why as the reason logged and handed to the
// Sharer ("fleet": the group revoked it). It reports whether it did; a
// grant already being revoked is not revoked again.
func (m *Manager) RevokeID(id, why string, match func(Grant) bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.byID[id]
	if e == nil || (e.state != Starting && e.state != Active) {
		return false
	}
	if match != nil && !match(view(e)) {
		return false
	}
	m.startRevokeLocked(e, why)
	return true
}
