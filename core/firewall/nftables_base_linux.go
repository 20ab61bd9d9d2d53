package firewall

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/nftables"

	"github.com/sesame-knock/sesame/core/knock"
)

// tableState is what ensureBase found of the grants backend's objects.
type tableState struct {
	exists      bool
	incompat    []string // why the table cannot be repaired in place
	missingSets []*nftables.Set
	chains      map[string]*nftables.Chain
	rulesOK     bool
	guarded     []knock.Port // sorted; nil if the set is missing or unreadable
}

func (st tableState) missing(set string) bool {
	return slices.ContainsFunc(st.missingSets, func(s *nftables.Set) bool { return s.Name == set })
}

// inspect compares table inet sesame with the grants backend's objects.
func (b *nftBackend) inspect(c *nftables.Conn) (tableState, error) {
	v, err := inspect(c, []string{nftInput, nftGuard}, []string{nftGuarded})
	if err != nil || !v.exists {
		return tableState{}, err
	}
	st := tableState{exists: true, chains: v.chains}
	for _, want := range nftSets() {
		if v.sets[want.Name] == nil {
			st.missingSets = append(st.missingSets, want)
		}
	}
	wantIn, wantGuard := nftRules()
	d := v.diff(nftSets(), []*nftables.Chain{nftGuardChain(), nftInputChain()},
		map[string][]nftRule{nftInput: wantIn, nftGuard: wantGuard})
	st.incompat, st.rulesOK = d.reshaped, d.rulesOK
	if ports, ok := v.portsIn(nftGuarded); ok {
		st.guarded = ports // unreadable elements leave it nil: rewritten
	}
	return st, nil
}

// ensureBaseLocked repairs table inet sesame in one atomic batch: what is
// missing is added, rules that are not exactly Sesame's are rewritten, the
// guarded set is made to match. Existing grants survive unless the table
// had to be replaced because a set or chain has the wrong shape.
//
// With trustGen it does nothing when the nf_tables generation is the one
// this backend's own batches left since it last found or made the table
// whole: no one else committed anything to any table since (Grant). It
// inspects when the generation moved, is unknown or cannot be read
// (Setup, EnsureBase and so Reconcile always inspect).
func (b *nftBackend) ensureBaseLocked(ctx context.Context, trustGen bool) (recreated bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	// Read before the inspection, so that a change landing between the
	// two moves the generation past wantGen and is inspected next time.
	g, gerr := b.gen()
	if trustGen && gerr == nil && b.genKnown && g == b.wantGen {
		return false, nil
	}
	b.genKnown = false
	b.forgetHeldLocked() // what changed may be the allow sets
	if gerr != nil {
		b.log.Debug("cannot read the nf_tables generation; inspecting table inet sesame", "error", gerr)
	}
	c, err := b.conn()
	if err != nil {
		return false, err
	}
	st, err := b.inspect(c)
	if err != nil {
		return false, err
	}
	if len(st.incompat) > 0 {
		b.log.Warn("replacing table inet sesame; its grants are lost until reconcile restores them", "reasons", st.incompat)
		c.DelTable(sesameTable)
		st = tableState{}
	}
	guardedOK := st.guarded != nil && slices.Equal(st.guarded, b.guarded)
	if st.exists && len(st.missingSets) == 0 && st.rulesOK && guardedOK {
		b.wantGen, b.genKnown = g, gerr == nil
		return false, nil
	}

	c.AddTable(sesameTable)
	sets := nftSets()
	for _, s := range sets {
		if !st.exists || st.missing(s.Name) {
			if err := c.AddSet(s, nil); err != nil {
				return false, fmt.Errorf("add set %s: %w", s.Name, err)
			}
		}
	}
	if !guardedOK {
		guarded := sets[2]
		if st.exists && !st.missing(nftGuarded) {
			c.FlushSet(guarded) // also drops elements it could not read
		}
		if len(b.guarded) > 0 {
			els := make([]nftables.SetElement, len(b.guarded))
			for i, p := range b.guarded {
				els[i] = nftables.SetElement{Key: portKey(p)}
			}
			if err := c.SetAddElements(guarded, els); err != nil {
				return false, fmt.Errorf("fill set guarded: %w", err)
			}
		}
	}
	if !st.exists || !st.rulesOK {
		in, gd := nftInputChain(), nftGuardChain()
		c.AddChain(gd)
		c.AddChain(in)
		if st.chains[nftInput] != nil {
			c.FlushChain(in)
		}
		if st.chains[nftGuard] != nil {
			c.FlushChain(gd)
		}
		wantIn, wantGuard := nftRules()
		for _, r := range wantGuard {
			c.AddRule(&nftables.Rule{Table: sesameTable, Chain: gd, Exprs: r.exprs, UserData: tagData(r.tag)})
		}
		for _, r := range wantIn {
			c.AddRule(&nftables.Rule{Table: sesameTable, Chain: in, Exprs: r.exprs, UserData: tagData(r.tag)})
		}
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("create table inet %s: %w", nftTable, err)
	}
	b.wantGen, b.genKnown = g+1, gerr == nil // one batch, one commit
	// After Setup, anything changed here was missing, flushed or edited.
	return true, nil
}

// committedLocked accounts for one batch of this backend: a success
// committed one transaction and moved the nf_tables generation by one, a
// failure by an unknown amount (the next Grant inspects).
func (b *nftBackend) committedLocked(err error) {
	if err != nil {
		b.genKnown = false
		b.forgetHeldLocked()
		return
	}
	b.wantGen++
}
