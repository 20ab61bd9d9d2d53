package firewall

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Report says what Reconcile changed, for the caller to log.
type Report struct {
	// Recreated is true when Sesame's base objects (chain and jump, or
	// table, sets and chains) were missing or damaged and were rebuilt:
	// someone flushed or reloaded the firewall.
	Recreated bool
	// Restored are wanted live grants that were missing from the kernel or
	// differed from what Sesame wants (source, ports, deadline), and were
	// granted again.
	Restored []Grant
	// Removed are grants found in the kernel that were not wanted or whose
	// deadline had passed, as List returned them.
	Removed []Grant
}

// Changed reports whether Reconcile had to change anything.
func (r Report) Changed() bool { return r.Recreated || len(r.Restored) > 0 || len(r.Removed) > 0 }

// Reconcile makes the kernel hold exactly the live grants in want: it
// rebuilds Sesame's base objects if b keeps any and they are gone, grants
// again every wanted grant whose deadline is after now and which is missing
// or different, and revokes every grant found that is not wanted or whose
// deadline is not after now (by want's deadline when wanted, so an entry
// whose kernel copy ran out early is restored rather than removed).
//
// A want entry that is invalid, or a backend call that fails, does not stop
// the others; their errors are joined in the returned error and the Report
// lists what did succeed. A failing base check or List stops Reconcile,
// since nothing can be compared without them.
func Reconcile(ctx context.Context, b Backend, want []Grant, now time.Time) (Report, error) {
	var rep Report
	got, err := baseAndList(ctx, b, &rep)
	if err != nil {
		return rep, err
	}

	var errs []error
	wantByID := make(map[string]Grant, len(want))
	var wantOrder []string
	for _, w := range want {
		n, err := normalize(w)
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall.Reconcile: %w", err))
			continue
		}
		if prev, dup := wantByID[n.ID]; dup {
			// Two live records for one ID: keep the later deadline, which
			// is the one the grant lifecycle extended last.
			if !n.Deadline.After(prev.Deadline) {
				continue
			}
		} else {
			wantOrder = append(wantOrder, n.ID)
		}
		wantByID[n.ID] = n
	}

	gotByID := make(map[string][]Grant, len(got))
	var gotOrder []string
	for _, g := range got {
		if _, seen := gotByID[g.ID]; !seen {
			gotOrder = append(gotOrder, g.ID)
		}
		gotByID[g.ID] = append(gotByID[g.ID], g)
	}

	// Removals first: they free room in shared entries.
	for _, id := range gotOrder {
		w, wanted := wantByID[id]
		if wanted && w.Deadline.After(now) {
			continue
		}
		gs := gotByID[id]
		if err := b.Revoke(ctx, gs[0]); err != nil {
			errs = append(errs, fmt.Errorf("firewall.Reconcile: revoke %s: %w", id, err))
			continue
		}
		rep.Removed = append(rep.Removed, gs...)
	}

	for _, id := range wantOrder {
		w := wantByID[id]
		if !w.Deadline.After(now) {
			continue
		}
		if gs := gotByID[id]; len(gs) == 1 && sameGrant(gs[0], w) {
			continue
		}
		if err := b.Grant(ctx, w, now); err != nil {
			errs = append(errs, fmt.Errorf("firewall.Reconcile: restore %s: %w", id, err))
			continue
		}
		rep.Restored = append(rep.Restored, w)
	}
	return rep, errors.Join(errs...)
}

// syncer is implemented by backends that keep a view of their kernel
// objects (iptables): sync re-reads the kernel once, repairs the base
// objects and the view, and returns what List would: EnsureBase and List
// with one read.
type syncer interface {
	sync(ctx context.Context) (recreated bool, got []Grant, err error)
}

// baseAndList repairs b's base objects and lists its grants, noting a repair
// in rep.
func baseAndList(ctx context.Context, b Backend, rep *Report) ([]Grant, error) {
	if s, ok := b.(syncer); ok {
		recreated, got, err := s.sync(ctx)
		rep.Recreated = recreated
		if err != nil {
			return nil, fmt.Errorf("firewall.Reconcile %s: %w", b.Name(), err)
		}
		return got, nil
	}
	if bk, ok := b.(BaseKeeper); ok {
		recreated, err := bk.EnsureBase(ctx)
		rep.Recreated = recreated
		if err != nil {
			return nil, fmt.Errorf("firewall.Reconcile %s: base objects: %w", b.Name(), err)
		}
	}
	got, err := b.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("firewall.Reconcile %s: %w", b.Name(), err)
	}
	return got, nil
}

// sameGrant compares what the kernel holds: source, ports and deadline at
// the kernel's precision. Door is not stored, so it is not compared.
func sameGrant(got, want Grant) bool {
	return got.ID == want.ID && got.Src == want.Src &&
		slices.Equal(sortPorts(got.Ports), want.Ports) && SameDeadline(got.Deadline, want.Deadline)
}
