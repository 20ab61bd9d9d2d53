package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// retries bounds the compare-and-swap loops of Extend and Revoke.
const retries = 8

// leaseTTL is the lease (whole seconds, rounded up) that keeps a grant's
// key until slack after its deadline.
func leaseTTL(deadline, now time.Time, slack time.Duration) int64 {
	d := deadline.Sub(now) + slack
	return int64((d + time.Second - 1) / time.Second)
}

// Publish shares g, a grant this node made, with the group. It sets
// g.Origin to this node. It is idempotent, keyed by g.ID, so a node that
// restarts calls it again for every grant it journaled but did not see
// confirmed. Outcomes:
//   - nil: the group holds g (just now, or from an earlier call that
//     landed before a crash), with g.Deadline or a later one;
//   - ErrRevoked: g was revoked in the group meanwhile: revoke it locally,
//     do not publish again;
//   - ErrExpired: g's deadline has passed; nothing was written;
//   - a *ValueError for a malformed g; another error when etcd failed
//     (the call may or may not have landed: call again).
//
// The key is created in one transaction that checks neither the key nor
// its revocation marker exists, on a fresh lease of deadline+LeaseSlack,
// so no call ever creates the key twice or brings back a revoked grant.
func (f *Fleet) Publish(ctx context.Context, g Grant) error {
	return f.publish(ctx, g, f.opts.Now())
}

func (f *Fleet) publish(ctx context.Context, g Grant, now time.Time) error {
	g.Origin = f.cfg.Node
	val, err := g.Marshal()
	if err != nil {
		return err
	}
	if !g.Deadline.After(now) {
		return fmt.Errorf("fleet.Publish %s: %w", g.ID, ErrExpired)
	}
	key, tomb := GrantKey(f.cfg.Group, g.ID), revokedKey(f.cfg.Group, g.ID)
	lease, err := f.cli.Grant(ctx, leaseTTL(g.Deadline, now, f.opts.LeaseSlack))
	if err != nil {
		return fmt.Errorf("fleet.Publish %s: lease: %w", g.ID, err)
	}
	resp, err := f.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(tomb), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(key), clientv3.OpGet(tomb)).
		Commit()
	if err != nil {
		f.dropLease(lease.ID)
		return fmt.Errorf("fleet.Publish %s: %w", g.ID, err)
	}
	if resp.Succeeded {
		f.log.Debug("published", "id", g.ID, "door", g.Door, "source", g.Source, "deadline", g.Deadline, "rev", resp.Header.Revision)
		return nil
	}
	f.dropLease(lease.ID)
	if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
		return fmt.Errorf("fleet.Publish %s: %w (by %s)", g.ID, ErrRevoked, kvs[0].Value)
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		// Both were deleted between the compare and the get: cannot
		// happen within one transaction, but do not guess.
		return fmt.Errorf("fleet.Publish %s: %w", g.ID, ErrConflict)
	}
	have, err := f.parseKV(kvs[0])
	if err != nil {
		return fmt.Errorf("fleet.Publish %s: the group holds a bad value under its id: %w", g.ID, err)
	}
	if have.Door != g.Door || have.Source != g.Source || have.Origin != g.Origin {
		return fmt.Errorf("fleet.Publish %s: the id is taken by a grant of %s from %s on door %s", g.ID, have.Origin, have.Source, have.Door)
	}
	if !g.Deadline.After(have.Deadline) {
		return nil // an earlier call landed
	}
	return f.extend(ctx, g.ID, g.Deadline, now)
}

// Extend moves grant id's deadline to deadline everywhere (a repeat
// knock). A deadline not after the current one changes nothing.
// Outcomes: nil; ErrNotFound when the group no longer holds the grant
// (revoked, or expired: the caller should end its own copy); ErrExpired;
// ErrConflict when other writers kept changing the key; an etcd error.
//
// Each extension puts the new value on a new lease sized to the new
// deadline, in a transaction conditioned on the key's last modification,
// then revokes the old lease (which no longer holds anything). A new
// lease, not a keepalive: a keepalive can only renew a lease's original
// TTL and needs the origin alive to send it, while a lease sized to the
// deadline keeps the grant on its own even if the origin dies, and never
// past its deadline plus LeaseSlack. A crash between the new lease and
// the transaction leaves an empty lease that expires by itself.
func (f *Fleet) Extend(ctx context.Context, id string, deadline time.Time) error {
	return f.extend(ctx, id, deadline, f.opts.Now())
}

func (f *Fleet) extend(ctx context.Context, id string, deadline, now time.Time) error {
	if !deadline.After(now) {
		return fmt.Errorf("fleet.Extend %s: %w", id, ErrExpired)
	}
	key := GrantKey(f.cfg.Group, id)
	for range retries {
		resp, err := f.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("fleet.Extend %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("fleet.Extend %s: %w", id, ErrNotFound)
		}
		kv := resp.Kvs[0]
		g, err := f.parseKV(kv)
		if err != nil {
			return fmt.Errorf("fleet.Extend %s: %w", id, err)
		}
		if !deadline.After(g.Deadline) {
			return nil
		}
		g.Deadline = deadline
		val, err := g.Marshal()
		if err != nil {
			return err
		}
		lease, err := f.cli.Grant(ctx, leaseTTL(deadline, now, f.opts.LeaseSlack))
		if err != nil {
			return fmt.Errorf("fleet.Extend %s: lease: %w", id, err)
		}
		tr, err := f.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
			Commit()
		if err != nil {
			f.dropLease(lease.ID)
			return fmt.Errorf("fleet.Extend %s: %w", id, err)
		}
		if !tr.Succeeded {
			f.dropLease(lease.ID)
			continue
		}
		if kv.Lease != 0 {
			f.dropLease(clientv3.LeaseID(kv.Lease))
		}
		f.log.Debug("extended", "id", id, "deadline", deadline, "rev", tr.Header.Revision)
		return nil
	}
	return fmt.Errorf("fleet.Extend %s: %w", id, ErrConflict)
}

// Revoke ends grant id on every node: it deletes the key and, in the
// same transaction, writes a revocation marker on the grant's own lease,
// so a crashed origin that publishes the grant again gets ErrRevoked
// until the grant would have expired anyway. Outcomes: nil; ErrNotFound
// when the group holds no such grant; ErrConflict; an etcd error.
func (f *Fleet) Revoke(ctx context.Context, id string) error {
	key, tomb := GrantKey(f.cfg.Group, id), revokedKey(f.cfg.Group, id)
	for range retries {
		resp, err := f.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("fleet.Revoke %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("fleet.Revoke %s: %w", id, ErrNotFound)
		}
		kv := resp.Kvs[0]
		ops := []clientv3.Op{clientv3.OpDelete(key)}
		if kv.Lease != 0 {
			// A key without a lease was not written by Publish; a marker
			// without one would never go away, so it gets none.
			ops = append(ops, clientv3.OpPut(tomb, f.cfg.Node, clientv3.WithLease(clientv3.LeaseID(kv.Lease))))
		}
		tr, err := f.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(ops...).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			continue // the lease just expired, taking the key: look again
		}
		if err != nil {
			return fmt.Errorf("fleet.Revoke %s: %w", id, err)
		}
		if tr.Succeeded {
			f.log.Debug("revoked", "id", id, "rev", tr.Header.Revision)
			return nil
		}
	}
	return fmt.Errorf("fleet.Revoke %s: %w", id, ErrConflict)
}

// RevokeSource revokes every grant of the group whose source is addr
// (`sesame revoke ADDRESS`) and returns their ids. Grants that vanish
// meanwhile are not an error.
func (f *Fleet) RevokeSource(ctx context.Context, addr netip.Addr) ([]string, error) {
	snap, err := f.List(ctx)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, g := range snap.Grants {
		if g.Source != addr.Unmap() {
			continue
		}
		if err := f.Revoke(ctx, g.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return done, err
		}
		done = append(done, g.ID)
	}
	return done, nil
}

// Snapshot is the group's grants at one revision.
type Snapshot struct {
	Rev    int64
	Grants []Grant // sorted by ID (ids sort by creation time)
	// Refused are keys under the prefix whose value did not parse.
	Refused []error
}

// List reads every grant of the group (`sesame grants --fleet`), with
// its origin node and identity, including expired ones whose lease has
// not run out yet (compare Deadline with now).
func (f *Fleet) List(ctx context.Context) (Snapshot, error) {
	resp, err := f.cli.Get(ctx, grantsPrefix(f.cfg.Group), clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, fmt.Errorf("fleet.List %s: %w", f.cfg.Group, err)
	}
	s := Snapshot{Rev: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		g, err := f.parseKV(kv)
		if err != nil {
			s.Refused = append(s.Refused, err)
			continue
		}
		s.Grants = append(s.Grants, g)
	}
	sort.Slice(s.Grants, func(i, j int) bool { return s.Grants[i].ID < s.Grants[j].ID })
	return s, nil
}

// parseKV parses a grant key and value and checks they agree.
func (f *Fleet) parseKV(kv *mvccpb.KeyValue) (Grant, error) {
	id, err := idFromKey(f.cfg.Group, string(kv.Key))
	if err != nil {
		return Grant{}, err
	}
	g, err := Parse(kv.Value)
	if err != nil {
		err.(*ValueError).Key = string(kv.Key)
		return Grant{}, err
	}
	if g.ID != id {
		return Grant{}, &ValueError{Key: string(kv.Key), Err: fmt.Errorf("value is grant %q, not %q", g.ID, id)}
	}
	return g, nil
}

// dropLease revokes a lease that holds nothing any more; failure only
// means it lives until its TTL runs out.
func (f *Fleet) dropLease(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.ProbeTimeout)
	defer cancel()
	if _, err := f.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		f.log.Debug("could not revoke an unused lease (it expires by itself)", "lease", fmt.Sprintf("%x", int64(id)), "error", err)
	}
}
