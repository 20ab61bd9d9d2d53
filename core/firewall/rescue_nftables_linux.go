package firewall

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

// nftRescue keeps the rescue in table inet sesame over netlink. Each
// operation opens its own netlink socket, in the network namespace of the
// calling thread, and changes the kernel in one atomic batch.
type nftRescue struct {
	spec rescueSpec
	dial func() (*nftables.Conn, error) // dialNetlink; tests record instead
}

func newNFTRescue(s rescueSpec) *nftRescue { return &nftRescue{spec: s, dial: dialNetlink} }

func (r *nftRescue) name() string { return NFTables.String() }

// nftRescueState is what inspect found of the rescue's objects.
type nftRescueState struct {
	view     tableView
	problems []string // what install must fix
	// fatal are problems install cannot fix without touching the grants
	// backend's objects (allow4/allow6 of another shape).
	fatal   []string
	ports   []knock.Port // elements of rescue_ports, sorted
	portsOK bool         // rescue_ports holds exactly the spec's ports
	held    bool
	left    time.Duration
	others  int // chains in the table that are not the rescue's
}

func (r *nftRescue) inspect(c *nftables.Conn) (nftRescueState, error) {
	v, err := inspect(c, rescueChainNames(), []string{nftRescuePorts, nftRescueAlive})
	st := nftRescueState{view: v}
	if err != nil {
		return st, err
	}
	if !v.exists {
		st.problems = append(st.problems, "table inet sesame missing")
		return st, nil
	}
	// allow4 and allow6 are the grants backend's: the rescue creates them
	// when missing but never replaces them.
	grants := v.diff([]*nftables.Set{allowSet(false), allowSet(true)}, nil, nil)
	for _, p := range grants.problems {
		if slices.Contains(grants.reshaped, p) {
			st.fatal = append(st.fatal, "the grants' "+p)
		} else {
			st.problems = append(st.problems, p)
		}
	}
	st.problems = append(st.problems, v.diff(rescueSets(), rescueChains(), rescueRules(r.spec)).problems...)
	st.others = len(v.chains)
	for _, ch := range rescueChains() {
		if v.chains[ch.Name] != nil {
			st.others--
		}
	}
	if v.sets[nftRescuePorts] != nil {
		// Unreadable elements, other ports or another shape: refill it.
		var readable bool
		st.ports, readable = v.portsIn(nftRescuePorts)
		if !readable || !slices.Equal(st.ports, r.spec.ports) {
			st.problems = append(st.problems, "set "+nftRescuePorts+" holds other ports")
		}
		st.portsOK = readable && slices.Equal(st.ports, r.spec.ports) &&
			sameShape(v.sets[nftRescuePorts], portSet(nftRescuePorts, false))
	}
	if els, ok := v.elems[nftRescueAlive]; ok {
		st.held, st.left = aliveState(els, r.spec.ports)
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
		if p, err := parsePortKey(el.Key); err == nil && el.Expires > 0 {
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

func (r *nftRescue) state(ctx context.Context) (rescueState, error) {
	if err := ctx.Err(); err != nil {
		return rescueState{}, err
	}
	c, err := r.dial()
	if err != nil {
		return rescueState{}, err
	}
	st, err := r.inspect(c)
	if err != nil {
		return rescueState{}, err
	}
	return rescueState{problems: append(slices.Clone(st.fatal), st.problems...), held: st.held, left: st.left}, nil
}

// install repairs everything in one batch: missing sets are added, a set
// of another shape or a chain of another kind is replaced, the rescue's
// chains are flushed and refilled when their rules differ. rescue_alive is
// kept when it has the right shape, so the heartbeat and the hold marker
// survive a reinstall (a config change does not open the rescue).
func (r *nftRescue) install(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := r.dial()
	if err != nil {
		return err
	}
	st, err := r.inspect(c)
	if err != nil {
		return err
	}
	if len(st.fatal) > 0 {
		return fmt.Errorf("%v", st.fatal)
	}
	if len(st.problems) == 0 {
		return nil
	}
	v := st.view
	c.AddTable(sesameTable)
	// Empty the rescue's chains first: rules reference the sets and the
	// other chains, which may have to be replaced below.
	for _, ch := range rescueChains() {
		if v.chains[ch.Name] != nil {
			c.FlushChain(ch)
		}
	}
	for _, ch := range slices.Backward(rescueChains()) {
		if got := v.chains[ch.Name]; got != nil && !sameChain(got, ch) {
			c.DelChain(ch)
		}
	}
	for _, s := range []*nftables.Set{allowSet(false), allowSet(true)} {
		if v.sets[s.Name] == nil {
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("add set %s: %w", s.Name, err)
			}
		}
	}
	for _, s := range rescueSets() {
		got := v.sets[s.Name]
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
		if s.Name == nftRescueAlive {
			for _, p := range r.spec.ports {
				els = append(els, nftables.SetElement{Key: portKey(p), Timeout: r.spec.after})
			}
		}
		if err := c.AddSet(s, els); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	ports, got := portSet(nftRescuePorts, false), v.sets[nftRescuePorts]
	if !st.portsOK && got != nil && sameShape(got, ports) {
		c.FlushSet(ports)
	}
	if !st.portsOK && len(r.spec.ports) > 0 {
		els := make([]nftables.SetElement, len(r.spec.ports))
		for i, p := range r.spec.ports {
			els[i] = nftables.SetElement{Key: portKey(p)}
		}
		if err := c.SetAddElements(ports, els); err != nil {
			return fmt.Errorf("fill %s: %w", nftRescuePorts, err)
		}
	}
	rules := rescueRules(r.spec)
	for _, ch := range rescueChains() {
		c.AddChain(ch)
		for _, rl := range rules[ch.Name] {
			c.AddRule(&nftables.Rule{Table: sesameTable, Chain: ch, Exprs: rl.exprs, UserData: tagData(rl.tag)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%v: %w", st.problems, err)
	}
	return nil
}

// addHeartbeats re-adds each port's heartbeat with a fresh timeout. An
// element that exists keeps its old timeout when added again on older
// kernels, so each is added (a no-op if present), deleted and added anew,
// in the caller's batch: no packet sees it missing, and no step can fail
// for an element that has just expired.
func (r *nftRescue) addHeartbeats(c *nftables.Conn) error {
	s := rescueAliveSet()
	for _, p := range r.spec.ports {
		el := []nftables.SetElement{{Key: portKey(p), Timeout: r.spec.after}}
		if err := c.SetAddElements(s, el); err != nil {
			return err
		}
		if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: portKey(p)}}); err != nil {
			return err
		}
		if err := c.SetAddElements(s, el); err != nil {
			return err
		}
	}
	return nil
}

// dropHeartbeats deletes the heartbeat elements (adding them first, so
// that ones already gone do not fail the batch).
func (r *nftRescue) dropHeartbeats(c *nftables.Conn) error {
	for _, p := range r.spec.ports {
		if err := addDel(c, portKey(p), r.spec.after); err != nil {
			return err
		}
	}
	return nil
}

func addDel(c *nftables.Conn, key []byte, timeout time.Duration) error {
	s := rescueAliveSet()
	if err := c.SetAddElements(s, []nftables.SetElement{{Key: key, Timeout: timeout}}); err != nil {
		return err
	}
	return c.SetDeleteElements(s, []nftables.SetElement{{Key: key}})
}

func (r *nftRescue) refresh(ctx context.Context) error { return r.batch(ctx, r.addHeartbeats) }

// open adds the hold marker and drops the heartbeats in one batch.
func (r *nftRescue) open(ctx context.Context) error {
	return r.batch(ctx, func(c *nftables.Conn) error {
		if err := c.SetAddElements(rescueAliveSet(), []nftables.SetElement{{Key: holdKey}}); err != nil {
			return err
		}
		return r.dropHeartbeats(c)
	})
}

// close removes the hold marker and refreshes the heartbeats in one batch.
func (r *nftRescue) close(ctx context.Context) error {
	return r.batch(ctx, func(c *nftables.Conn) error {
		if err := addDel(c, holdKey, 0); err != nil {
			return err
		}
		return r.addHeartbeats(c)
	})
}

func (r *nftRescue) batch(ctx context.Context, fill func(*nftables.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := r.dial()
	if err != nil {
		return err
	}
	if err := fill(c); err != nil {
		return err
	}
	return c.Flush()
}

// remove deletes the rescue's chains and sets. When nothing else is left
// in table inet sesame (the grants backend is not in use), the table goes
// too, with the allow4/allow6 sets the rescue may have created.
func (r *nftRescue) remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := r.dial()
	if err != nil {
		return err
	}
	st, err := r.inspect(c)
	if err != nil {
		return err
	}
	v := st.view
	if !v.exists {
		return nil
	}
	if st.others == 0 {
		c.DelTable(sesameTable)
	} else {
		for _, ch := range rescueChains() {
			if v.chains[ch.Name] != nil {
				c.FlushChain(ch)
			}
		}
		for _, ch := range slices.Backward(rescueChains()) {
			if v.chains[ch.Name] != nil {
				c.DelChain(ch)
			}
		}
		for _, s := range rescueSets() {
			if v.sets[s.Name] != nil {
				c.DelSet(s)
			}
		}
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

func (r *nftRescue) held(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	c, err := r.dial()
	if err != nil {
		return false, err
	}
	els, err := c.GetSetElements(rescueAliveSet())
	if err != nil {
		return false, fmt.Errorf("list %s: %w", nftRescueAlive, err)
	}
	held, _ := aliveState(els, nil)
	return held, nil
}

// nftFindRescue reads what table inet sesame holds of a rescue; ok is
// false when nf_tables is unusable (nothing of Sesame's can be there).
func nftFindRescue(dial func() (*nftables.Conn, error)) (st nftRescueState, ok bool, err error) {
	c, err := dial()
	if err != nil {
		return st, false, nil
	}
	st, err = (&nftRescue{dial: dial}).inspect(c)
	if err != nil {
		if _, lerr := c.ListTables(); lerr != nil {
			return st, false, nil
		}
		return st, false, err
	}
	return st, true, nil
}

// found reports whether any of the rescue's chains or sets is there.
func (st nftRescueState) found() bool {
	if st.view.sets[nftRescuePorts] != nil || st.view.sets[nftRescueAlive] != nil {
		return true
	}
	return slices.ContainsFunc(rescueChainNames(), func(n string) bool { return st.view.chains[n] != nil })
}
