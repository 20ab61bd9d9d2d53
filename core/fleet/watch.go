package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventKind says what happened to a grant.
type EventKind uint8

const (
	// Put: a grant appeared or its deadline moved (apply or extend it).
	Put EventKind = iota + 1
	// Delete: a grant was revoked, its lease ran out, or its value no
	// longer parses (end it; an unknown id is not an error).
	Delete
)

func (k EventKind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event is one change to the group's grants.
type Event struct {
	Kind EventKind
	ID   string
	// Grant is the grant for Put; for Delete, the grant as it was when
	// etcd still had its value (zero otherwise).
	Grant Grant
	Rev   int64 // the etcd revision of the change
}

// Consumer applies what the group shares. The watcher calls it from
// Run's goroutine, one call at a time, in revision order; a call should
// not block for long (it delays later changes, not other nodes).
type Consumer interface {
	// FleetChanges hands over changes up to and including revision rev.
	// Once they are applied the consumer records rev durably, for
	// Store.FleetRevision after a restart. Puts of this node's own
	// grants are not handed over (the origin applied them before
	// publishing), nor puts whose deadline has passed.
	FleetChanges(rev int64, events []Event)
	// FleetSnapshot hands over the group's live grants at rev, this
	// node's own included: apply those not applied yet, end every fleet
	// grant not in live (revoked while the node was away), then record
	// rev. It comes first when there is no revision to resume from, and
	// after etcd compacted the history the watcher needed.
	FleetSnapshot(rev int64, live []Grant)
}

// Store tells where to resume.
type Store interface {
	// FleetRevision returns the last revision the Consumer recorded;
	// 0 means none (Run starts with a snapshot).
	FleetRevision() (int64, error)
}

// errCompacted ends a watch session whose history etcd compacted; the
// next session starts with a snapshot at once.
var errCompacted = errors.New("history compacted")

// Run watches the group and hands changes to the Consumer until ctx is
// cancelled (then it returns nil). It resumes after the Store's
// revision; it reconnects by itself, with backoff, after any failure,
// and reports connectivity through Status. It returns an error only
// when it cannot start (no Consumer or Store, the Store fails, already
// running).
func (f *Fleet) Run(ctx context.Context) error {
	if f.opts.Consumer == nil || f.opts.Store == nil {
		return errors.New("fleet.Run: Options.Consumer and Options.Store are required")
	}
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("fleet.Run: already running")
	}
	f.running = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running = false
		f.status.Connected = false
		f.mu.Unlock()
	}()

	rev, err := f.opts.Store.FleetRevision()
	if err != nil {
		return fmt.Errorf("fleet.Run: last applied revision: %w", err)
	}
	if rev < 0 {
		return fmt.Errorf("fleet.Run: last applied revision %d is negative", rev)
	}
	w := &watcher{f: f, rev: rev, snapshot: rev == 0, resumed: rev != 0}
	f.mu.Lock()
	f.status.Revision, f.status.Progress = rev, rev
	f.mu.Unlock()
	f.log.Info("watching the group", "group", f.cfg.Group, "node", f.cfg.Node, "endpoints", f.cfg.Endpoints, "from_revision", rev)

	attempt := 0
	for {
		progressed, err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errCompacted) {
			attempt = 0
			continue
		}
		if progressed {
			attempt = 0
		}
		f.lost(err)
		delay := backoffDelay(attempt, f.opts.BackoffMin, f.opts.BackoffMax, rand.Float64())
		attempt++
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// watcher is Run's state; only Run's goroutine touches it.
type watcher struct {
	f        *Fleet
	rev      int64 // last revision handed over (or resumed from)
	snapshot bool  // the next session starts with a snapshot
	resumed  bool  // rev came from the Store and was not checked yet
}

// session is one watch: a probe, a snapshot when needed, then events
// until the watch fails or ctx ends. progressed reports whether it
// handed anything over.
func (w *watcher) session(ctx context.Context) (progressed bool, err error) {
	f := w.f
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	head, err := f.probe(sctx)
	if err != nil {
		return false, err
	}
	f.contact(head)
	if w.resumed && w.rev > head {
		// The store is ahead of the cluster: it was rebuilt or restored
		// from a backup. Its history is not ours: start over.
		f.log.Warn("the last applied revision is ahead of etcd's (cluster rebuilt?); re-listing", "revision", w.rev, "etcd_revision", head)
		w.snapshot = true
	}
	w.resumed = false
	if w.snapshot {
		if err := w.takeSnapshot(sctx); err != nil {
			return false, err
		}
		progressed = true
	}

	// The probes start before the watch: the client's Watch call does
	// not return until its stream to etcd is open, and a partition met
	// meanwhile must still show in Status (and a stream that never opens
	// while etcd answers must count as stalled).
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(sctx))
	var wg sync.WaitGroup
	stalled := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.probeLoop(wctx, stalled)
	}()
	go func() {
		defer wg.Done()
		select {
		case <-stalled:
			wcancel() // ends a Watch call still waiting for its stream
		case <-wctx.Done():
		}
	}()
	defer wg.Wait()
	defer wcancel()
	wch := f.cli.Watch(wctx, grantsPrefix(f.cfg.Group), clientv3.WithPrefix(), clientv3.WithRev(w.rev+1), clientv3.WithPrevKV())

	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-stalled:
			return progressed, errors.New("the watch stopped confirming progress; watching again")
		case resp, ok := <-wch:
			if !ok {
				return progressed, errors.New("watch closed")
			}
			if resp.CompactRevision != 0 {
				f.log.Info("etcd compacted the history this node needed; re-listing the group", "revision", w.rev, "compacted_to", resp.CompactRevision)
				w.snapshot = true
				return progressed, errCompacted
			}
			if err := resp.Err(); err != nil {
				return progressed, fmt.Errorf("watch: %w", err)
			}
			if resp.Canceled {
				return progressed, errors.New("watch cancelled by etcd")
			}
			f.contact(resp.Header.Revision)
			if resp.IsProgressNotify() {
				w.progress(resp.Header.Revision)
				continue
			}
			if len(resp.Events) > 0 {
				w.deliver(resp.Events)
				progressed = true
			}
		}
	}
}

// stallProbes is how many probes in a row may find the watch behind
// the head seen by the probe before them, with no progress notice
// catching up, before the watch counts as stalled.
const stallProbes = 3

// probeLoop checks for a quorum and asks for a progress notice every
// ProbeInterval, until ctx ends. It closes stalled when the watch stops
// confirming progress while etcd answers (a stream that died without an
// error), so the session starts over from the last revision.
func (w *watcher) probeLoop(ctx context.Context, stalled chan<- struct{}) {
	f := w.f
	t := time.NewTicker(f.opts.ProbeInterval)
	defer t.Stop()
	var lastHead int64
	behind := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, err := f.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			f.lost(err)
			continue
		}
		f.contact(head)
		if lastHead > 0 && f.Status().Progress < lastHead {
			behind++
		} else {
			behind = 0
		}
		if behind >= stallProbes {
			f.log.Warn("the watch stopped confirming progress; watching again", "progress", f.Status().Progress, "etcd_revision", lastHead)
			close(stalled)
			return
		}
		lastHead = head
		// Bounded: the client hands the request to the watch stream's
		// goroutine, which takes it only once the stream is open; while
		// etcd cannot be reached it is not, and an unbounded call would
		// stop the probes, leaving Status connected through a partition.
		pctx, cancel := context.WithTimeout(ctx, f.opts.ProbeTimeout)
		err = f.cli.RequestProgress(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			f.log.Debug("progress request failed", "error", err)
		}
	}
}

func (w *watcher) progress(rev int64) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.f.status.Progress = max(w.f.status.Progress, rev)
}

// takeSnapshot lists the group and hands its live grants over.
func (w *watcher) takeSnapshot(ctx context.Context) error {
	f := w.f
	snap, err := f.List(ctx)
	if err != nil {
		return err
	}
	now := f.opts.Now()
	live := make([]Grant, 0, len(snap.Grants))
	for _, g := range snap.Grants {
		if g.Deadline.After(now) {
			live = append(live, g)
		}
	}
	for _, err := range snap.Refused {
		f.log.Error("refused a fleet grant", "error", err)
	}
	f.opts.Consumer.FleetSnapshot(snap.Rev, live)
	w.rev, w.snapshot = snap.Rev, false
	f.mu.Lock()
	f.status.Snapshots++
	f.status.Refused += len(snap.Refused)
	f.status.Revision = snap.Rev
	f.status.Progress = max(f.status.Progress, snap.Rev)
	f.mu.Unlock()
	f.log.Info("applied the group's grants", "live", len(live), "revision", snap.Rev)
	return nil
}

// deliver turns one watch response's events into Events.
func (w *watcher) deliver(evs []*clientv3.Event) {
	f := w.f
	now := f.opts.Now()
	out := make([]Event, 0, len(evs))
	refused := 0
	for _, ev := range evs {
		rev := ev.Kv.ModRevision
		id, err := idFromKey(f.cfg.Group, string(ev.Kv.Key))
		if err != nil {
			refused++
			f.log.Error("refused a fleet grant", "error", err)
			continue
		}
		switch ev.Type {
		case mvccpb.PUT:
			g, err := f.parseKV(ev.Kv)
			if err != nil {
				// Whatever the key held before is no longer a grant.
				refused++
				f.log.Error("refused a fleet grant", "error", err, "revision", rev)
				out = append(out, Event{Kind: Delete, ID: id, Rev: rev})
				continue
			}
			if g.Origin == f.cfg.Node || !g.Deadline.After(now) {
				continue
			}
			out = append(out, Event{Kind: Put, ID: id, Grant: g, Rev: rev})
		case mvccpb.DELETE:
			e := Event{Kind: Delete, ID: id, Rev: rev}
			if ev.PrevKv != nil {
				if g, err := f.parseKV(ev.PrevKv); err == nil {
					e.Grant = g
				}
			}
			out = append(out, e)
		}
	}
	last := evs[len(evs)-1].Kv.ModRevision
	if len(out) > 0 {
		f.opts.Consumer.FleetChanges(last, out)
	}
	w.rev = last
	f.mu.Lock()
	f.status.Refused += refused
	f.status.Revision = last
	f.status.Progress = max(f.status.Progress, last)
	f.mu.Unlock()
}
