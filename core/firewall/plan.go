package firewall

import (
	"fmt"
	"slices"
	"time"
)

// Planning: what to add, rewrite and delete so that the kernel's entries
// carry exactly the claims a Grant or Revoke asks for.

// change is one step of a plan: add New (Old nil), delete Old (New nil), or
// replace Old by New.
type change struct {
	Old, New *entry
}

func (c change) String() string {
	switch {
	case c.Old == nil:
		return "add " + c.New.entryKey.String() + " [" + c.New.comment() + "]"
	case c.New == nil:
		return "delete " + c.Old.entryKey.String() + " [" + c.Old.comment() + "]"
	}
	return "replace " + c.Old.entryKey.String() + " [" + c.Old.comment() + "] by [" + c.New.comment() + "]"
}

// normally has one entry; iptables can hold duplicates after a crash
// between adding a replacement and deleting the original.
func groupEntries(es []entry) (order []entryKey, groups map[entryKey][]*entry) {
	groups = make(map[entryKey][]*entry)
	for i := range es {
		k := es[i].entryKey
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], &es[i])
	}
	return order, groups
}

// expiryOf is the latest claim, taking exact deadlines from exact where known.
func expiryOf(cs []claim, exact map[string]time.Time) time.Time {
	var t time.Time
	for _, c := range cs {
		ct := time.Unix(c.Until, 0)
		if e, ok := exact[c.ID]; ok {
			ct = e
		}
		if ct.After(t) {
			t = ct
		}
	}
	return t
}

// settle plans the changes that leave the entries of one key holding
// exactly claims cs: nothing, one add, one replace, or a delete; duplicate
// entries of the key are deleted. Entries whose claims have all expired by
// now are deleted rather than rewritten (a kernel timeout must be positive).
func settle(k entryKey, group []*entry, cs []claim, exact map[string]time.Time, now time.Time) (adds, dels []change, err error) {
	var first *entry
	if len(group) > 0 {
		first = group[0]
		for _, dup := range group[1:] {
			dels = append(dels, change{Old: dup})
		}
	}
	expiry := expiryOf(cs, exact)
	if len(cs) == 0 || !expiry.After(now) {
		if first != nil {
			dels = append(dels, change{Old: first})
		}
		return adds, dels, nil
	}
	if first != nil && slices.Equal(first.Claims, cs) && len(group) == 1 {
		return nil, nil, nil
	}
	ne := &entry{entryKey: k, Claims: cs, Expiry: expiry}
	if n := len(ne.comment()); n > maxCommentLen {
		return nil, nil, fmt.Errorf("%w: %s: %d grants need a %d-byte comment (max %d)", ErrTooManyClaims, k, len(cs), n, maxCommentLen)
	}
	return []change{{Old: first, New: ne}}, dels, nil
}

// planGrant returns the changes that give grant g (normalized) a claim on
// exactly the entries split(g) names, with its new deadline: adds and
// replacements first, deletions last, so that the address is never
// without an entry that admits it.
func planGrant(existing []entry, g Grant, split splitFunc, now time.Time) ([]change, error) {
	order, groups := groupEntries(existing)
	mine := claim{ID: g.ID, Until: untilSecs(g.Deadline)}
	exact := map[string]time.Time{g.ID: g.Deadline}
	var adds, dels []change
	wanted := make(map[entryKey]bool)
	for _, k := range split(g) {
		wanted[k] = true
		var cs []claim
		for _, e := range groups[k] {
			cs = mergeClaims(cs, e.Claims...)
		}
		cs = mergeClaims(withoutClaim(cs, g.ID), mine)
		a, d, err := settle(k, groups[k], cs, exact, now)
		if err != nil {
			return nil, err
		}
		adds, dels = append(adds, a...), append(dels, d...)
	}
	// Entries this ID held before but no longer needs (its ports or
	// source changed): drop its claim from them.
	for _, k := range order {
		if wanted[k] {
			continue
		}
		a, d, err := dropClaim(k, groups[k], g.ID, now)
		if err != nil {
			return nil, err
		}
		adds, dels = append(adds, a...), append(dels, d...)
	}
	return append(adds, dels...), nil
}

// planRevoke returns the changes that remove every claim of id.
func planRevoke(existing []entry, id string, now time.Time) ([]change, error) {
	order, groups := groupEntries(existing)
	var adds, dels []change
	for _, k := range order {
		a, d, err := dropClaim(k, groups[k], id, now)
		if err != nil {
			return nil, err
		}
		adds, dels = append(adds, a...), append(dels, d...)
	}
	return append(adds, dels...), nil
}

func dropClaim(k entryKey, group []*entry, id string, now time.Time) (adds, dels []change, err error) {
	held := false
	var cs []claim
	for _, e := range group {
		held = held || slices.ContainsFunc(e.Claims, func(c claim) bool { return c.ID == id })
		cs = mergeClaims(cs, e.Claims...)
	}
	if !held {
		return nil, nil, nil
	}
	return settle(k, group, withoutClaim(cs, id), nil, now)
}
