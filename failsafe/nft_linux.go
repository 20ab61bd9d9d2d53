package failsafe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// nftGate keeps the rescue in table inet sesame over netlink. Each
// operation opens its own netlink socket, in the network namespace of the
// calling thread, and changes the kernel in one atomic batch.
type nftGate struct {
	spec spec
	dial func() (*nftables.Conn, error) // a netlink connection; tests record instead
}

func newNFTGate(s spec) *nftGate { return &nftGate{spec: s, dial: conn} }

func (g *nftGate) Name() string { return "nftables" }

func conn() (*nftables.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return c, nil
}

// nftState is what inspect found of the rescue's objects.
type nftState struct {
	table    bool
	sets     map[string]*nftables.Set
	chains   map[string]*nftables.Chain
	problems []string // what Install must fix
	// fatal are problems Install cannot fix without touching the grants
	// backend's objects (allow4/allow6 of another shape).
	fatal  []string
	ports  []knock.Port // elements of rescue_ports, sorted
	held   bool
	left   time.Duration
	others int // chains in the table that are not the rescue's
}

func (g *nftGate) inspect(c *nftables.Conn) (nftState, error) {
	st := nftState{sets: map[string]*nftables.Set{}, chains: map[string]*nftables.Chain{}}
	if _, err := c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			st.problems = append(st.problems, "table inet sesame missing")
			return st, nil
		}
		return st, fmt.Errorf("list table: %w", err)
	}
	st.table = true
	sets, err := c.GetSets(sesameTable)
	if err != nil {
		return st, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		st.sets[s.Name] = s
	}
	for _, want := range grantSets() {
		if got := st.sets[want.Name]; got == nil {
			st.problems = append(st.problems, "set "+want.Name+" missing")
		} else if !sameShape(got, want) {
			st.fatal = append(st.fatal, "core/firewall's set "+want.Name+" has another shape")
		}
	}
	for _, want := range rescueSets() {
		if got := st.sets[want.Name]; got == nil {
			st.problems = append(st.problems, "set "+want.Name+" missing")
		} else if !sameShape(got, want) {
			st.problems = append(st.problems, "set "+want.Name+" has another shape")
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	mine := map[string]bool{}
	for _, ch := range rescueChains() {
		mine[ch.Name] = true
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != nftTable {
			continue
		}
		if mine[ch.Name] {
			st.chains[ch.Name] = ch
		} else {
			st.others++
		}
	}
	want := nftRules(g.spec)
	for _, wc := range rescueChains() {
		got := st.chains[wc.Name]
		if got == nil {
			st.problems = append(st.problems, "chain "+wc.Name+" missing")
			continue
		}
		if !sameChain(got, wc) {
			st.problems = append(st.problems, "chain "+wc.Name+" has another type, hook or priority")
			continue
		}
		rules, err := c.GetRules(sesameTable, got)
		if err != nil {
			return st, fmt.Errorf("list rules of %s: %w", wc.Name, err)
		}
		tags := make([]string, len(rules))
		for i, r := range rules {
			tags[i] = ruleTag(r)
		}
		wantTags := make([]string, len(want[wc.Name]))
		for i, r := range want[wc.Name] {
			wantTags[i] = r.tag
		}
		if !slices.Equal(tags, wantTags) {
			st.problems = append(st.problems, "chain "+wc.Name+" has other rules")
		}
	}
	if s := st.sets[nftPorts]; s != nil {
		els, err := c.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("list %s: %w", nftPorts, err)
		}
		for _, el := range els {
			if p, ok := parseProtoPortKey(el.Key); ok {
				st.ports = append(st.ports, p)
			}
		}
		slices.SortFunc(st.ports, comparePorts)
		if !slices.Equal(st.ports, g.spec.Ports) {
			st.problems = append(st.problems, "set "+nftPorts+" holds other ports")
		}
	}
	if s := st.sets[nftAlive]; s != nil {
		els, err := c.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("list %s: %w", nftAlive, err)
		}
		st.held, st.left = aliveState(els, g.spec.Ports)
	}
	return st, nil
}

// aliveState reads rescue_alive: whether the hold marker is there, and the
// least time left on the ports' heartbeats (0 if one is missing).
func aliveState(els []nftables.SetElement, ports []knock.Port) (held bool, left time.Duration) {
	got := map[knock.Port]time.Duration{}
	for _, el := range els {
		if slices.Equal(el.Key, holdKey) {
			held = true
			continue
		}
		if p, ok := parseProtoPortKey(el.Key); ok && el.Expires > 0 {
			got[p] = el.Expires
		}
	}
	for i, p := range ports {
		l, ok := got[p]
		if !ok {
			return held, 0
		}
		if i == 0 || l < left {
			left = l
		}
	}
	return held, left
}

func sameChain(got, want *nftables.Chain) bool {
	if want.Hooknum == nil {
		return got.Hooknum == nil
	}
	return got.Hooknum != nil && *got.Hooknum == *want.Hooknum && got.Priority != nil &&
		*got.Priority == *want.Priority && got.Type == want.Type
}

func (g *nftGate) State(ctx context.Context) (kernelState, error) {
	if err := ctx.Err(); err != nil {
		return kernelState{}, err
	}
	c, err := g.dial()
	if err != nil {
		return kernelState{}, fmt.Errorf("failsafe: nftables state: %w", err)
	}
	st, err := g.inspect(c)
	if err != nil {
		return kernelState{}, fmt.Errorf("failsafe: nftables state: %w", err)
	}
	problems := append(slices.Clone(st.fatal), st.problems...)
	return kernelState{Installed: len(problems) == 0, Problems: problems, Held: st.held, Left: st.left}, nil
}

// Install repairs everything in one batch: missing sets are added, a set
// of another shape or a chain of another kind is replaced, the rescue's
// chains are flushed and refilled when their rules differ. rescue_alive is
// kept when it has the right shape, so the heartbeat and the hold marker
// survive a reinstall (a config change does not open the rescue).
func (g *nftGate) Install(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return fmt.Errorf("failsafe: nftables install: %w", err)
	}
	st, err := g.inspect(c)
	if err != nil {
		return fmt.Errorf("failsafe: nftables install: %w", err)
	}
	if len(st.fatal) > 0 {
		return fmt.Errorf("failsafe: nftables install: %v", st.fatal)
	}
	if len(st.problems) == 0 {
		return nil
	}
	c.AddTable(sesameTable)
	// Empty the rescue's chains first: rules reference the sets and the
	// other chains, which may have to be replaced below.
	for _, ch := range rescueChains() {
		if st.chains[ch.Name] != nil {
			c.FlushChain(ch)
		}
	}
	for _, ch := range slices.Backward(rescueChains()) {
		if got := st.chains[ch.Name]; got != nil && !sameChain(got, ch) {
			c.DelChain(ch)
		}
	}
	for _, s := range grantSets() {
		if st.sets[s.Name] == nil {
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("failsafe: nftables install: add set %s: %w", s.Name, err)
			}
		}
	}
	for _, s := range rescueSets() {
		got := st.sets[s.Name]
		if got != nil && sameShape(got, s) {
			continue
		}
		if got != nil {
			c.DelSet(got)
		}
		// A new heartbeat set is born holding its heartbeat, in the
		// batch that adds the rules reading it: a fresh rescue is never
		// open, not even between two netlink messages.
		var els []nftables.SetElement
		if s.Name == aliveSet().Name {
			for _, p := range g.spec.Ports {
				els = append(els, nftables.SetElement{Key: protoPortKey(p), Timeout: g.spec.After})
			}
		}
		if err := c.AddSet(s, els); err != nil {
			return fmt.Errorf("failsafe: nftables install: add set %s: %w", s.Name, err)
		}
	}
	ports := rescueSets()[0]
	if !slices.Equal(st.ports, g.spec.Ports) && st.sets[nftPorts] != nil && sameShape(st.sets[nftPorts], ports) {
		c.FlushSet(ports)
	}
	if !slices.Equal(st.ports, g.spec.Ports) && len(g.spec.Ports) > 0 {
		els := make([]nftables.SetElement, len(g.spec.Ports))
		for i, p := range g.spec.Ports {
			els[i] = nftables.SetElement{Key: protoPortKey(p)}
		}
		if err := c.SetAddElements(ports, els); err != nil {
			return fmt.Errorf("failsafe: nftables install: fill %s: %w", nftPorts, err)
		}
	}
	rules := nftRules(g.spec)
	for _, ch := range rescueChains() {
		c.AddChain(ch)
		for _, r := range rules[ch.Name] {
			c.AddRule(&nftables.Rule{Table: sesameTable, Chain: ch, Exprs: r.exprs, UserData: tagData(r.tag)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("failsafe: nftables install %v: %w", st.problems, err)
	}
	return nil
}

func aliveSet() *nftables.Set { return rescueSets()[1] }

// Refresh re-adds each port's heartbeat with a fresh timeout. An element
// that exists keeps its old timeout when added again on older kernels, so
// each is added (a no-op if present), deleted and added anew, in one
// atomic batch: no packet sees it missing, and no step can fail for an
// element that has just expired.
func (g *nftGate) Refresh(ctx context.Context) error {
	err := g.batch(ctx, func(c *nftables.Conn) error {
		s := aliveSet()
		for _, p := range g.spec.Ports {
			k := protoPortKey(p)
			el := []nftables.SetElement{{Key: k, Timeout: g.spec.After}}
			if err := c.SetAddElements(s, el); err != nil {
				return err
			}
			if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: k}}); err != nil {
				return err
			}
			if err := c.SetAddElements(s, el); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failsafe: nftables heartbeat: %w", err)
	}
	return nil
}

// Drop deletes the heartbeat elements (adding them first, so that ones
// already gone do not fail the batch).
func (g *nftGate) Drop(ctx context.Context) error {
	err := g.batch(ctx, func(c *nftables.Conn) error {
		for _, p := range g.spec.Ports {
			if err := addDel(c, protoPortKey(p), g.spec.After); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failsafe: nftables drop heartbeat: %w", err)
	}
	return nil
}

func addDel(c *nftables.Conn, key []byte, timeout time.Duration) error {
	s := aliveSet()
	if err := c.SetAddElements(s, []nftables.SetElement{{Key: key, Timeout: timeout}}); err != nil {
		return err
	}
	return c.SetDeleteElements(s, []nftables.SetElement{{Key: key}})
}

func (g *nftGate) SetHold(ctx context.Context, on bool) error {
	err := g.batch(ctx, func(c *nftables.Conn) error {
		if on {
			return c.SetAddElements(aliveSet(), []nftables.SetElement{{Key: holdKey}})
		}
		return addDel(c, holdKey, 0)
	})
	if err != nil {
		return fmt.Errorf("failsafe: nftables hold %t: %w", on, err)
	}
	return nil
}

func (g *nftGate) batch(ctx context.Context, fill func(*nftables.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	if err := fill(c); err != nil {
		return err
	}
	return c.Flush()
}

// Remove deletes the rescue's chains and sets. When nothing else is left
// in table inet sesame (the grants backend is not in use), the table goes
// too, with the allow4/allow6 sets the rescue may have created.
func (g *nftGate) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return fmt.Errorf("failsafe: nftables remove: %w", err)
	}
	st, err := g.inspect(c)
	if err != nil {
		return fmt.Errorf("failsafe: nftables remove: %w", err)
	}
	if !st.table {
		return nil
	}
	if st.others == 0 {
		c.DelTable(sesameTable)
	} else {
		for _, ch := range rescueChains() {
			if st.chains[ch.Name] != nil {
				c.FlushChain(ch)
			}
		}
		for _, ch := range slices.Backward(rescueChains()) {
			if st.chains[ch.Name] != nil {
				c.DelChain(ch)
			}
		}
		for _, s := range rescueSets() {
			if st.sets[s.Name] != nil {
				c.DelSet(s)
			}
		}
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("failsafe: nftables remove: %w", err)
	}
	return nil
}

func (g *nftGate) Held(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	c, err := g.dial()
	if err != nil {
		return false, fmt.Errorf("failsafe: nftables hold: %w", err)
	}
	els, err := c.GetSetElements(aliveSet())
	if err != nil {
		return false, fmt.Errorf("failsafe: nftables hold: list %s: %w", nftAlive, err)
	}
	held, _ := aliveState(els, nil)
	return held, nil
}
