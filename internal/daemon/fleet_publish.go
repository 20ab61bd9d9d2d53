package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/core/journal"
)

// publisher takes this node's grants to the group, one etcd call at a
// time on its own goroutine (loop), so that neither the grant manager
// nor a knock ever waits for etcd. It keeps one job per grant id, the
// latest wish winning, so its memory is bounded by the live grants
// whatever happens to etcd; a failed call is retried with backoff until
// the grant's deadline.
type publisher struct {
	m    *fleetMember
	wake chan struct{} // a token when a job was added or changed
	// to is the group (core/fleet's Fleet, set before loop starts);
	// confirm records in the journal that the group holds a grant;
	// revokeHere ends a grant here that the group revoked meanwhile.
	to         publishTarget
	confirm    func(id string) error
	revokeHere func(id string) bool

	mu   sync.Mutex // guards jobs
	jobs map[string]*pubJob
}

// publishTarget is what the publisher asks of the group.
type publishTarget interface {
	Publish(ctx context.Context, g fleet.Grant) error
	Revoke(ctx context.Context, id string) error
}

type pubJob struct {
	g fleet.Grant
	// until is when a failing job is given up: the grant's deadline
	// plus its lease's slack (by then it is gone from the group anyway).
	until     time.Time
	revoke    bool // end it in the group
	published bool // the group holds g as it is now (nothing to do)
	confirmed bool // the journal records that the group holds it
	failed    int  // calls failed in a row
}

func (p *publisher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// publish asks for g to be in the group, with its deadline.
func (p *publisher) publish(g fleet.Grant) {
	p.mu.Lock()
	j := p.jobs[g.ID]
	if j == nil {
		j = &pubJob{}
		p.jobs[g.ID] = j
	}
	if !j.revoke {
		j.g, j.published = g, false
		j.until = g.Deadline.Add(fleet.DefaultLeaseSlack)
	}
	p.mu.Unlock()
	p.kick()
}

// resume is publish for a grant a previous run journaled, confirmed or
// not; a job already there (a revocation) wins.
func (p *publisher) resume(g fleet.Grant, confirmed bool) {
	p.mu.Lock()
	if p.jobs[g.ID] == nil {
		p.jobs[g.ID] = &pubJob{g: g, confirmed: confirmed, until: g.Deadline.Add(fleet.DefaultLeaseSlack)}
	}
	p.mu.Unlock()
	p.kick()
}

func (p *publisher) extend(id string, deadline time.Time) {
	p.mu.Lock()
	j := p.jobs[id]
	if j == nil {
		p.mu.Unlock()
		p.extendKnown(id, deadline)
		return
	}
	if !j.revoke && deadline.After(j.g.Deadline) {
		j.g.Deadline, j.published = deadline, false
		j.until = deadline.Add(fleet.DefaultLeaseSlack)
	}
	p.mu.Unlock()
	p.kick()
}

// extendKnown makes a job for the extension of a grant published
// earlier, from the grant manager's view of it.
func (p *publisher) extendKnown(id string, deadline time.Time) {
	for _, g := range p.m.d.grants.List() {
		if g.ID == id && g.Shared != "" {
			p.publish(fleet.Grant{ID: id, Door: g.Shared, Source: g.Source, Open: g.Open, Deadline: deadline,
				Identity: identity(g.Auth, g.User, g.Key)})
			return
		}
	}
}

func (p *publisher) revoke(id string) {
	p.mu.Lock()
	j := p.jobs[id]
	if j == nil {
		// Not shared from here (a grant of another node that `sesame
		// revoke` could not end in the group): its deadline is not known
		// here, so give up after the longest a grant lasts.
		j = &pubJob{g: fleet.Grant{ID: id}, until: p.m.now().Add(maxRevokeRetry)}
		p.jobs[id] = j
	}
	j.revoke, j.published = true, false
	p.mu.Unlock()
	p.kick()
}

func (p *publisher) drop(id string) {
	p.mu.Lock()
	delete(p.jobs, id)
	p.mu.Unlock()
}

// pending counts the grants the group has not confirmed yet.
func (p *publisher) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, j := range p.jobs {
		if !j.published && !j.revoke {
			n++
		}
	}
	return n
}

// next picks a job with work to do, oldest id first.
func (p *publisher) next() (string, pubJob, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best string
	for id, j := range p.jobs {
		if j.published {
			continue
		}
		if best == "" || id < best {
			best = id
		}
	}
	if best == "" {
		return "", pubJob{}, false
	}
	return best, *p.jobs[best], true
}

// maxRevokeRetry bounds the retries of a revocation whose grant's
// deadline is not known here.
const maxRevokeRetry = time.Hour

// callTimeout bounds one etcd call of the publisher.
const callTimeout = 10 * time.Second

// loop runs the jobs until ctx ends.
func (p *publisher) loop(ctx context.Context) {
	attempt := 0
	for {
		id, j, ok := p.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		retry := p.do(cctx, id, j)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !retry {
			attempt = 0
			continue
		}
		// etcd failed: wait before the next call, whichever job it is.
		d := min(fleet.DefaultBackoffMin<<min(attempt, 8), fleet.DefaultBackoffMax)
		attempt++
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// do makes the call job j asks for, and reports whether it failed in a
// way worth retrying (etcd did not answer).
func (p *publisher) do(ctx context.Context, id string, j pubJob) (retry bool) {
	m := p.m
	now := m.now()
	finish := func(published bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		cur := p.jobs[id]
		if cur == nil {
			return
		}
		if cur.revoke == j.revoke && cur.g.Deadline.Equal(j.g.Deadline) {
			if published && !cur.revoke && cur.g.Deadline.After(now) {
				cur.published, cur.failed = true, 0
				cur.confirmed = true
				return
			}
			delete(p.jobs, id)
		}
	}
	failed := func(err error) bool {
		p.mu.Lock()
		n := 0
		if cur := p.jobs[id]; cur != nil {
			cur.failed++
			n = cur.failed
		}
		p.mu.Unlock()
		if !j.until.After(now) {
			// Past its deadline everywhere: nothing left to share.
			finish(false)
			return false
		}
		if n == 1 {
			m.log.Warn(fmt.Sprintf("fleet %s: grant %s not shared yet, retrying: %v", m.group, id, err), "grant_id", id, "error", err)
		}
		return true
	}
	if j.revoke {
		err := p.to.Revoke(ctx, id)
		switch {
		case err == nil:
			m.log.Info(fmt.Sprintf("grant %s revoked in fleet %s", id, m.group), event.Event{Kind: event.FleetRevoked, GrantID: id}.Args("group", m.group)...)
		case errors.Is(err, fleet.ErrNotFound):
		default:
			return failed(err)
		}
		finish(false)
		return false
	}
	err := p.to.Publish(ctx, j.g)
	switch {
	case err == nil:
		if !j.confirmed {
			if jerr := p.confirm(id); jerr != nil && !errors.Is(jerr, journal.ErrUnknownGrant) {
				// A restart publishes it again, which changes nothing.
				m.log.Warn("fleet: publication not journaled", "grant_id", id, "error", jerr)
			}
		}
		m.log.Info(fmt.Sprintf("%s: %s: grant shared with fleet %s until %s", j.g.Source, j.g.Door, m.group, j.g.Deadline.UTC().Format(time.RFC3339)),
			event.Event{Kind: event.FleetPublished, Door: j.g.Door, Source: j.g.Source, GrantID: id, Deadline: j.g.Deadline}.Args("group", m.group)...)
		finish(true)
	case errors.Is(err, fleet.ErrRevoked):
		finish(false)
		if p.revokeHere(id) {
			m.log.Info(fmt.Sprintf("%s: %s: grant was revoked in the fleet meanwhile; revoked here", j.g.Source, j.g.Door),
				event.Event{Kind: event.FleetRevoked, Door: j.g.Door, Source: j.g.Source, GrantID: id}.Args("group", m.group)...)
		}
	case errors.Is(err, fleet.ErrExpired):
		finish(false)
	case errors.Is(err, fleet.ErrBadValue):
		finish(false)
		m.log.Error(fmt.Sprintf("fleet %s: grant %s cannot be shared: %v", m.group, id, err), "grant_id", id, "error", err)
	default:
		return failed(err)
	}
	return false
}
