package firewall

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// Table inet sesame holds the objects of two owners in this package: the
// grants backend (allow4, allow6, guarded; chains input and guard) and the
// rescue (rescue_ports, rescue_alive; chains rescue, rescue_gate,
// rescue_admit, rescue_closed), which shares allow4 and allow6. Both read
// the table with inspect and compare what it found with what they want;
// each change is one batch, flushed once.

// dialNetlink opens a netlink connection to nf_tables in the network
// namespace of the calling thread. Backends keep it in a field that tests
// point at an nftrec.Recorder.
func dialNetlink() (*nftables.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return c, nil
}

// tableView is table inet sesame as inspect read it.
type tableView struct {
	exists bool
	sets   map[string]*nftables.Set   // every set in the table, by name
	chains map[string]*nftables.Chain // every chain in the table, by name
	// tags are the rule comments, in order, of the chains inspect was asked
	// to read; elems the elements of the sets it was asked to read. Chains
	// and sets that are missing have no entry.
	tags  map[string][]string
	elems map[string][]nftables.SetElement
}

// inspect reads table inet sesame: its sets and chains, the rule tags of
// the chains named in rulesOf and the elements of the sets named in
// elemsOf. A missing table is not an error: exists is false.
func inspect(c *nftables.Conn, rulesOf, elemsOf []string) (tableView, error) {
	v := tableView{sets: map[string]*nftables.Set{}, chains: map[string]*nftables.Chain{},
		tags: map[string][]string{}, elems: map[string][]nftables.SetElement{}}
	if _, err := c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return v, nil
		}
		return v, fmt.Errorf("list table: %w", err)
	}
	v.exists = true
	sets, err := c.GetSets(sesameTable)
	if err != nil {
		return v, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		v.sets[s.Name] = s
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return v, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == nftTable {
			v.chains[ch.Name] = ch
		}
	}
	for _, name := range rulesOf {
		ch := v.chains[name]
		if ch == nil {
			continue
		}
		rules, err := c.GetRules(sesameTable, ch)
		if err != nil {
			return v, fmt.Errorf("list rules of %s: %w", name, err)
		}
		tags := make([]string, len(rules))
		for i, r := range rules {
			tags[i] = ruleTag(r)
		}
		v.tags[name] = tags
	}
	for _, name := range elemsOf {
		s := v.sets[name]
		if s == nil {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return v, fmt.Errorf("list %s: %w", name, err)
		}
		v.elems[name] = els
	}
	return v, nil
}

// rulesAre reports whether chain holds exactly the rules want, in order,
// as their tags say; a missing chain does not.
func (v tableView) rulesAre(chain string, want []nftRule) bool {
	got, ok := v.tags[chain]
	if !ok {
		return false
	}
	return slices.EqualFunc(got, want, func(tag string, r nftRule) bool { return tag == r.tag })
}

// tableDiff is how table inet sesame differs from the sets and chains an
// owner wants.
type tableDiff struct {
	problems []string // one per object that differs, in the order wanted
	reshaped []string // those of problems that are a set of another shape or a chain of another kind
	rulesOK  bool     // every chain wanted is there with exactly its rules
}

// diff compares v with the sets and chains wanted and each chain's rules.
// A chain of another kind is not compared further.
func (v tableView) diff(sets []*nftables.Set, chains []*nftables.Chain, rules map[string][]nftRule) tableDiff {
	d := tableDiff{rulesOK: true}
	add := func(reshaped bool, problem string) {
		d.problems = append(d.problems, problem)
		if reshaped {
			d.reshaped = append(d.reshaped, problem)
		}
	}
	for _, want := range sets {
		switch got := v.sets[want.Name]; {
		case got == nil:
			add(false, "set "+want.Name+" missing")
		case !sameShape(got, want):
			add(true, "set "+want.Name+" has another shape")
		}
	}
	for _, want := range chains {
		switch got := v.chains[want.Name]; {
		case got == nil:
			d.rulesOK = false
			add(false, "chain "+want.Name+" missing")
		case !sameChain(got, want):
			d.rulesOK = false
			add(true, "chain "+want.Name+" has another type, hook or priority")
		case !v.rulesAre(want.Name, rules[want.Name]):
			d.rulesOK = false
			add(false, "chain "+want.Name+" has other rules")
		}
	}
	return d
}

// portsIn reads a set of protocol and port (guarded, rescue_ports): its
// elements, sorted. ok is false when the set was not read (it is missing)
// or holds an element that is not a port; ports has the readable ones.
func (v tableView) portsIn(set string) (ports []knock.Port, ok bool) {
	els, ok := v.elems[set]
	if !ok {
		return nil, false
	}
	ports = make([]knock.Port, 0, len(els))
	for _, el := range els {
		p, err := parsePortKey(el.Key)
		if err != nil {
			ok = false
			continue
		}
		ports = append(ports, p)
	}
	return sortPorts(ports), ok
}
