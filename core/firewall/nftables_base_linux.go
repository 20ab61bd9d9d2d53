package firewall

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// tableState is what ensureBase found of table inet sesame.
type tableState struct {
	exists      bool
	incompat    []string // why the table cannot be repaired in place
	missingSets []*nftables.Set
	chains      map[string]*nftables.Chain
	rulesOK     bool
	guarded     []knock.Port // sorted; nil if the set is missing
}

func (st tableState) missing(set string) bool {
	return slices.ContainsFunc(st.missingSets, func(s *nftables.Set) bool { return s.Name == set })
}

func (b *nftBackend) inspect(c *nftables.Conn) (tableState, error) {
	var st tableState
	if _, err := c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, nil
		}
		return st, fmt.Errorf("list table: %w", err)
	}
	st.exists = true
	sets, err := c.GetSets(sesameTable)
	if err != nil {
		return st, fmt.Errorf("list sets: %w", err)
	}
	for _, want := range nftSets() {
		i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == want.Name })
		if i < 0 {
			st.missingSets = append(st.missingSets, want)
			continue
		}
		got := sets[i]
		if got.KeyType.GetNFTMagic() != want.KeyType.GetNFTMagic() || got.KeyType.Bytes != want.KeyType.Bytes ||
			got.HasTimeout != want.HasTimeout || got.IsMap || got.Interval || got.Constant {
			st.incompat = append(st.incompat, "set "+want.Name+" has another shape")
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	st.chains = make(map[string]*nftables.Chain)
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == nftTable {
			st.chains[ch.Name] = ch
		}
	}
	if in := st.chains[nftInput]; in != nil {
		want := nftInputChain()
		if in.Hooknum == nil || *in.Hooknum != *want.Hooknum || in.Priority == nil || *in.Priority != *want.Priority ||
			in.Type != want.Type {
			st.incompat = append(st.incompat, "chain input has another hook, priority or type")
		}
	}
	if gd := st.chains[nftGuard]; gd != nil && gd.Hooknum != nil {
		st.incompat = append(st.incompat, "chain guard is a base chain")
	}
	st.rulesOK = true
	wantIn, wantGuard := nftRules()
	for name, want := range map[string][]nftRule{nftInput: wantIn, nftGuard: wantGuard} {
		ch := st.chains[name]
		if ch == nil {
			st.rulesOK = false
			continue
		}
		rules, err := c.GetRules(sesameTable, ch)
		if err != nil {
			return st, fmt.Errorf("list rules of %s: %w", name, err)
		}
		if len(rules) != len(want) {
			st.rulesOK = false
			continue
		}
		for i, r := range rules {
			if ruleTag(r) != want[i].tag {
				st.rulesOK = false
			}
		}
	}
	if !st.missing(nftGuarded) {
		els, err := c.GetSetElements(&nftables.Set{Table: sesameTable, Name: nftGuarded})
		if err != nil {
			return st, fmt.Errorf("list guarded: %w", err)
		}
		st.guarded = []knock.Port{}
		for _, el := range els {
			p, err := parseGuardedKey(el.Key)
			if err != nil {
				st.guarded = nil // unreadable: rewrite it
				break
			}
			st.guarded = append(st.guarded, p)
		}
		if st.guarded != nil {
			st.guarded = sortPorts(st.guarded)
		}
	}
	return st, nil
}

// ensureBaseLocked repairs table inet sesame in one atomic batch: what is
// missing is added, rules that are not exactly Sesame's are rewritten, the
// guarded set is made to match. Existing grants survive unless the table
// had to be replaced because a set or chain has the wrong shape.
func (b *nftBackend) ensureBaseLocked(ctx context.Context) (recreated bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
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
				els[i] = nftables.SetElement{Key: guardedKey(p)}
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
	// After Setup, anything changed here was missing, flushed or edited.
	return true, nil
}
