package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// Both backends keep grants as kernel entries (an iptables rule, an
// nftables set element) that each carry a comment naming the grants that
// want them: "sesame id=ssh-1 until=1764280950 id=web-7 until=1764281010".
// Two grants that open the same port to the same address share one entry
// rather than duplicating it, and revoking one leaves the entry to the
// other. The planning here is pure; the backends only apply its changes.

// claim says that grant ID wants an entry alive until Until (Unix
// seconds, rounded up).
type claim struct {
	ID    string
	Until int64
}

const (
	commentPrefix = "sesame"
	// maxCommentLen fits both kernels: nftables element userdata holds a
	// NUL-terminated string behind a one-byte length (254 characters), an
	// iptables comment match 255.
	maxCommentLen = 254
)

// formatComment renders claims, which must be sorted by ID.
func formatComment(cs []claim) string {
	var b strings.Builder
	b.WriteString(commentPrefix)
	for _, c := range cs {
		b.WriteString(" id=")
		b.WriteString(c.ID)
		b.WriteString(" until=")
		b.WriteString(strconv.FormatInt(c.Until, 10))
	}
	return b.String()
}

// parseComment reads a comment made by formatComment. ok is false for a
// comment Sesame did not write (the entry is then left alone).
func parseComment(s string) (cs []claim, ok bool) {
	f := strings.Fields(s)
	if len(f) < 3 || f[0] != commentPrefix || len(f)%2 != 1 {
		return nil, false
	}
	for i := 1; i < len(f); i += 2 {
		id, ok1 := strings.CutPrefix(f[i], "id=")
		us, ok2 := strings.CutPrefix(f[i+1], "until=")
		if !ok1 || !ok2 || !validID(id) {
			return nil, false
		}
		u, err := strconv.ParseInt(us, 10, 64)
		if err != nil || u <= 0 {
			return nil, false
		}
		cs = mergeClaims(cs, claim{ID: id, Until: u})
	}
	return cs, true
}

// mergeClaims adds claims to cs, keeping it sorted by ID with one claim per
// ID (the later Until wins).
func mergeClaims(cs []claim, add ...claim) []claim {
	for _, a := range add {
		i, found := slices.BinarySearchFunc(cs, a.ID, func(c claim, id string) int { return strings.Compare(c.ID, id) })
		switch {
		case !found:
			cs = slices.Insert(cs, i, a)
		case a.Until > cs[i].Until:
			cs[i].Until = a.Until
		}
	}
	return cs
}

func withoutClaim(cs []claim, id string) []claim {
	return slices.DeleteFunc(slices.Clone(cs), func(c claim) bool { return c.ID == id })
}

// entryKey identifies a kernel entry by what it matches.
type entryKey struct {
	Src   netip.Addr
	Proto knock.Proto
	Ports string // sorted port numbers joined by commas: "22" or "22,443"
}

func (k entryKey) String() string { return k.Src.String() + " " + k.Proto.String() + "/" + k.Ports }

// portNums parses Ports.
func (k entryKey) portNums() ([]uint16, error) {
	var out []uint16
	for _, s := range strings.Split(k.Ports, ",") {
		n, err := knock.ParsePortNum(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// entry is one kernel entry and the grants that want it.
type entry struct {
	entryKey
	Claims []claim // sorted by ID, one per ID
	// Expiry is when the entry stops being needed: the latest claim, with
	// the exact deadline of the grant being added rather than its rounded
	// second, so a kernel timeout is as precise as the caller's deadline.
	Expiry time.Time
	// handle lets the backend find the kernel object again (iptables: the
	// rule's arguments as listed); nil for entries the planner creates.
	handle any
}

func (e entry) comment() string { return formatComment(e.Claims) }

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

// splitFunc maps a normalized grant to the keys of the entries it needs.
type splitFunc func(Grant) []entryKey

// splitPerPort gives one key per port (nftables set elements).
func splitPerPort(g Grant) []entryKey {
	keys := make([]entryKey, len(g.Ports))
	for i, p := range g.Ports {
		keys[i] = entryKey{Src: g.Src, Proto: p.Proto, Ports: strconv.Itoa(int(p.Num))}
	}
	return keys
}

// splitPerProto gives one key per protocol and run of at most max ports
// (iptables multiport matches at most 15).
func splitPerProto(max int) splitFunc {
	return func(g Grant) []entryKey {
		var keys []entryKey
		var run []string
		flush := func(p knock.Proto) {
			if len(run) > 0 {
				keys = append(keys, entryKey{Src: g.Src, Proto: p, Ports: strings.Join(run, ",")})
				run = run[:0]
			}
		}
		for i, p := range g.Ports { // sorted by proto, then number
			if i > 0 && g.Ports[i-1].Proto != p.Proto {
				flush(g.Ports[i-1].Proto)
			}
			run = append(run, strconv.Itoa(int(p.Num)))
			if len(run) == max {
				flush(p.Proto)
			}
		}
		if len(g.Ports) > 0 {
			flush(g.Ports[len(g.Ports)-1].Proto)
		}
		return keys
	}
}

// groupEntries groups entries by key, keeping first-seen order. A key
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

// grantsFromEntries rebuilds grants from entries: one per (ID, source),
// with the union of the ports of its entries and the earliest deadline
// among them, so that an entry a crash left stale shows up as a
// difference from what Sesame wants.
func grantsFromEntries(es []entry) []Grant {
	type gk struct {
		id  string
		src netip.Addr
	}
	var order []gk
	out := make(map[gk]*Grant)
	for _, e := range es {
		nums, err := e.portNums()
		if err != nil {
			continue
		}
		for _, c := range e.Claims {
			k := gk{c.ID, e.Src}
			g := out[k]
			dl := time.Unix(c.Until, 0)
			if g == nil {
				g = &Grant{ID: c.ID, Src: e.Src, Deadline: dl}
				out[k] = g
				order = append(order, k)
			}
			if dl.Before(g.Deadline) {
				g.Deadline = dl
			}
			for _, n := range nums {
				g.Ports = append(g.Ports, knock.Port{Num: n, Proto: e.Proto})
			}
		}
	}
	grants := make([]Grant, 0, len(order))
	for _, k := range order {
		g := out[k]
		g.Ports = sortPorts(g.Ports)
		grants = append(grants, *g)
	}
	slices.SortStableFunc(grants, func(a, b Grant) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), a.Src.Compare(b.Src))
	})
	return grants
}
