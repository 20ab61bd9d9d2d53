package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
)

// fleetMember is the daemon's membership of a fleet group (Fleet_ keys,
// doors with Fleet = yes): the grant manager's Sharer, whose grants of
// Fleet doors it publishes once they are journaled, extends and revokes
// in the group (publisher); the watcher's Consumer and Store, applying
// the group's grants here through the grant manager with their origin's
// id and deadline and keeping the last revision applied in the journal;
// and the fleet half of `sesame revoke`, `sesame grants --fleet` and the
// status. Package fleet talks to etcd; this file decides what a grant
// means here.
type fleetMember struct {
	d        *daemon
	log      hclog.Logger
	now      func() time.Time
	hostname func() (string, error)
	pub      *publisher

	// Set by start before anything runs, read-only afterwards; f is nil
	// when no fleet runs (none configured, or off says why).
	f           *fleet.Fleet
	group, node string
	off         string
	cfg         fleet.Config // as started: later changes need a restart
	// runCtx is the watcher's context, for the consumer's waits; set
	// before Run starts, read only on Run's goroutine.
	runCtx context.Context

	// active is set while the fleet runs: Share shares only then.
	active atomic.Bool
	idx    atomic.Pointer[fleetIndex]

	run, mon, pw worker
}

func newFleetMember(d *daemon, log hclog.Logger) *fleetMember {
	m := &fleetMember{d: d, log: log, now: d.deps.now, hostname: os.Hostname}
	m.pub = &publisher{m: m, jobs: make(map[string]*pubJob), wake: make(chan struct{}, 1),
		confirm:    func(id string) error { return d.journal.Published(id) },
		revokeHere: func(id string) bool { return d.grants.RevokeID(id, fleetReason, nil) }}
	return m
}

// fleetIndex is a config's doors as the fleet needs them.
type fleetIndex struct {
	cfg   *config.Config
	doors map[string]*config.Door // every door, by name
	spa   []*config.Door          // Fleet doors with Open, in config order
}

func (m *fleetMember) index() *fleetIndex {
	cfg := m.d.config()
	if i := m.idx.Load(); i != nil && i.cfg == cfg {
		return i
	}
	i := &fleetIndex{cfg: cfg, doors: make(map[string]*config.Door, len(cfg.Doors))}
	for _, d := range cfg.Doors {
		i.doors[d.Name] = d
		if d.Fleet && len(d.Open) > 0 {
			i.spa = append(i.spa, d)
		}
	}
	m.idx.Store(i)
	return i
}

// service starts the membership when the config asks for a fleet. A
// fleet that cannot start (TLS files unreadable) is logged and shown in
// the status; the daemon and its local doors run without it.
func (m *fleetMember) service() hook {
	return hook{name: "fleet", start: func(ctx context.Context) error {
		m.start(ctx)
		return nil
	}, stop: func(context.Context) error {
		m.active.Store(false)
		m.run.stop()
		m.mon.stop()
		m.pw.stop()
		if m.f != nil {
			return m.f.Close()
		}
		return nil
	}}
}

func (m *fleetMember) start(ctx context.Context) {
	fc := m.d.config().Options.Fleet
	if !fc.Enabled() {
		return
	}
	m.cfg, m.group = fc, fc.Group
	fc, err := fc.WithDefaults(m.hostname)
	if err == nil {
		m.node = fc.Node
		m.f, err = fleet.New(fc, fleet.Options{Logger: m.log, Consumer: m, Store: m, Now: m.now})
	}
	if err != nil {
		m.off = err.Error()
		m.log.Error("fleet not started, local doors work: "+err.Error(), event.KeyKind, event.FleetDisconnected, "group", fc.Group, "error", err)
		return
	}
	m.pub.to = m.f
	m.active.Store(true)
	m.queueOwn()
	m.pw.goRun(ctx, m.pub.loop)
	m.run.goRun(ctx, func(ctx context.Context) {
		m.runCtx = ctx
		switch err := m.f.Check(ctx); {
		case ctx.Err() != nil:
			return
		case errors.Is(err, fleet.ErrTLS):
			m.log.Error("fleet: etcd refuses this node's TLS credentials; local doors work, fleet grants wait until they are fixed: "+err.Error(),
				event.KeyKind, event.FleetDisconnected, "group", m.group, "node", m.node, "error", err)
		case err != nil:
			m.log.Warn("fleet: etcd does not answer yet; local doors work, fleet grants follow once it does: "+err.Error(),
				event.KeyKind, event.FleetDisconnected, "group", m.group, "node", m.node, "error", err)
		}
		if err := m.f.Run(ctx); err != nil {
			m.log.Error("fleet watcher stopped: "+err.Error(), "error", err)
		}
	})
	m.mon.goRun(ctx, m.monitor)
}

// queueOwn hands the publisher every live grant made here on a Fleet
// door, as the journal has it: those a crash left unconfirmed are
// published again (Publish is idempotent: no grant twice, none lost),
// the others checked, so an extension the group missed gets there.
func (m *fleetMember) queueOwn() {
	live := make(map[string]bool)
	for _, g := range m.d.grants.List() {
		if g.State == grant.Active.String() || g.State == grant.Starting.String() {
			live[g.ID] = true
		}
	}
	now := m.now()
	for _, r := range m.d.journal.Pending() {
		if r.Shared == "" || r.Origin != "" || !live[r.ID] || !r.Deadline.After(now) {
			continue
		}
		m.pub.resume(fleet.Grant{ID: r.ID, Door: r.Shared, Source: r.Source, Open: r.Open, Deadline: r.Deadline,
			Identity: identity(r.Auth, r.User, r.Key)}, r.Published)
	}
}

// monitor logs the fleet's connectivity as events when it changes, and
// says once per config that a reload's change to the Fleet_ keys waits
// for a restart.
func (m *fleetMember) monitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	was := false
	var warned *config.Config
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := m.f.Status()
		switch {
		case st.Connected && !was:
			m.log.Info(fmt.Sprintf("fleet %s: connected to etcd as %s, revision %d", m.group, m.node, st.Revision),
				event.KeyKind, event.FleetConnected, "group", m.group, "node", m.node, "revision", st.Revision)
		case !st.Connected && was:
			m.log.Warn(fmt.Sprintf("fleet %s: etcd not reachable (%s); local doors work, fleet grants held here close at their deadlines", m.group, st.Err),
				event.KeyKind, event.FleetDisconnected, "group", m.group, "node", m.node, "error", st.Err)
		}
		was = st.Connected
		if cfg := m.d.config(); cfg != warned && !sameFleet(cfg.Options.Fleet, m.cfg) {
			warned = cfg
			m.log.Warn("the Fleet_ keys changed: the change takes effect when sesamed restarts", "group", m.group)
		}
	}
}

func sameFleet(a, b fleet.Config) bool {
	return slices.Equal(a.Endpoints, b.Endpoints) && a.Group == b.Group && a.Node == b.Node &&
		a.CA == b.CA && a.Cert == b.Cert && a.Key == b.Key
}

// identity is how a grant's asker travels in the group: "" for a knock,
// "fwknop:USER" for an fwknop packet, "ssh:COMMENT SHA256:..." for an
// SSH-signed knock.
func identity(auth, user, key string) string {
	switch {
	case auth == "":
		return user
	case key != "":
		return auth + ":" + user + " " + key
	}
	return auth + ":" + user
}

// parseIdentity is identity's inverse, bounded to what the journal
// keeps; anything else is kept as the user's name.
func parseIdentity(s string) grant.Auth {
	var a grant.Auth
	for _, m := range []string{event.AuthFwknop, event.AuthSSH} {
		if rest, ok := strings.CutPrefix(s, m+":"); ok {
			a.Method, s = m, rest
			if i := strings.LastIndexByte(s, ' '); i >= 0 && strings.HasPrefix(s[i+1:], "SHA256:") && len(s)-i-1 <= journal.MaxKeyLen {
				s, a.Key = s[:i], s[i+1:]
			}
			break
		}
	}
	a.User = cut(s, journal.MaxUserLen)
	return a
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// The grant manager's Sharer.

// Share shares a knock's grant when its door is Fleet = yes, and an SPA
// or SSH-signed grant under the first Fleet door whose Open holds every
// port it opens.
func (m *fleetMember) Share(r *grant.Request) string {
	if !m.active.Load() {
		return ""
	}
	idx := m.index()
	if r.Auth.Method == "" {
		if d := idx.doors[r.Name]; d != nil && d.Fleet {
			return d.Name
		}
		return ""
	}
	if len(r.Ports) == 0 {
		return ""
	}
	for _, d := range idx.spa {
		if subset(r.Ports, d.Open) {
			return d.Name
		}
	}
	return ""
}

func subset(ps, of []knock.Port) bool {
	for _, p := range ps {
		if !slices.Contains(of, p) {
			return false
		}
	}
	return true
}

func (m *fleetMember) Granted(g grant.Grant) {
	m.pub.publish(fleet.Grant{ID: g.ID, Door: g.Shared, Source: g.Source, Open: g.Open, Deadline: g.Deadline,
		Identity: identity(g.Auth, g.User, g.Key)})
}

func (m *fleetMember) Extended(id string, deadline time.Time) { m.pub.extend(id, deadline) }

// Ended revokes the grant in the group, unless it ended by its deadline
// (every node's copy ends then too) or because the group revoked it.
func (m *fleetMember) Ended(id, why string) {
	if why == "expire" || why == fleetReason {
		m.pub.drop(id)
		return
	}
	m.pub.revoke(id)
}

// fleetReason is why a grant the group revoked ends here.
const fleetReason = "fleet"

// The watcher's Store and Consumer.

func (m *fleetMember) FleetRevision() (int64, error) { return m.d.journal.FleetRevision(m.group), nil }

func (m *fleetMember) FleetChanges(rev int64, evs []fleet.Event) {
	var made []string
	for _, e := range evs {
		switch e.Kind {
		case fleet.Put:
			id, ok := m.apply(e.Grant)
			if !ok {
				return // shutting down: the next start replays from the last revision
			}
			if id != "" {
				made = append(made, id)
			}
		case fleet.Delete:
			m.drop(e)
		}
	}
	m.record(rev, made)
}

func (m *fleetMember) FleetSnapshot(rev int64, live []fleet.Grant) {
	held := make(map[string]grant.Grant)
	for _, g := range m.d.grants.List() {
		if g.State == grant.Active.String() || g.State == grant.Starting.String() {
			held[g.ID] = g
		}
	}
	in := make(map[string]bool, len(live))
	var made []string
	for _, g := range live {
		in[g.ID] = true
		if g.Origin == m.node {
			continue // made here: it lives by this node's own record
		}
		id, ok := m.apply(g)
		if !ok {
			return
		}
		if id != "" {
			made = append(made, id)
		}
	}
	for _, h := range held {
		switch {
		case in[h.ID]:
		case h.Origin != "":
			// Revoked, or expired, while this node was away.
			if m.d.grants.RevokeID(h.ID, fleetReason, nil) {
				m.log.Info(fmt.Sprintf("%s: %s: fleet grant from %s no longer in the group; revoked here", h.Source, h.Door, h.Origin),
					event.Event{Kind: event.FleetRevoked, Door: h.Door, Source: h.Source, GrantID: h.ID}.Args(event.KeyOrigin, h.Origin)...)
			}
		case h.Shared != "":
			// Made here and not in the group: publishing it again finds
			// out whether it was revoked meanwhile (then it ends here) or
			// only missed (then the group gets it back).
			m.pub.publish(fleet.Grant{ID: h.ID, Door: h.Shared, Source: h.Source, Open: h.Open, Deadline: h.Deadline,
				Identity: identity(h.Auth, h.User, h.Key)})
		}
	}
	m.record(rev, made)
}

// record waits until the grants made for a batch are journaled, then
// records rev: after a crash the watcher resumes after rev, so nothing
// up to it may be lost.
func (m *fleetMember) record(rev int64, made []string) {
	for _, id := range made {
		if err := m.d.grants.Journaled(m.runCtx, id); err != nil {
			return
		}
	}
	if err := m.d.journal.SetFleetRevision(m.group, rev); err != nil {
		m.log.Error("fleet: the revision applied was not journaled; a restart applies the changes since the last one again", "revision", rev, "error", err)
	}
}

// apply applies a grant of the group here: a new grant under its id and
// deadline (its id is returned), or an extension of the one held. A
// grant this node must not apply is refused and logged: its door is
// unknown here or not Fleet = yes, or it names ports the door does not
// open. ok is false only when the grant manager is closing.
func (m *fleetMember) apply(g fleet.Grant) (id string, ok bool) {
	refuse := func(reason, msg string) (string, bool) {
		m.log.Warn(fmt.Sprintf("%s: %s: fleet grant from %s refused: %s", g.Source, g.Door, g.Origin, msg),
			event.Event{Kind: event.FleetRefused, Door: g.Door, Source: g.Source, GrantID: g.ID}.Args(event.KeyReason, reason, event.KeyOrigin, g.Origin)...)
		return "", true
	}
	d := m.index().doors[g.Door]
	switch {
	case d == nil:
		return refuse("unknown door", "no door of that name here")
	case !d.Fleet:
		return refuse("not a fleet door", "the door here is not Fleet = yes")
	case !subset(g.Open, d.Open):
		return refuse("ports", fmt.Sprintf("it opens %s, the door here opens %s", knock.FormatSequence(g.Open), knock.FormatSequence(d.Open)))
	case m.d.opts.SkipIPv6 && g.Source.Is6():
		return refuse("ipv6", "IPv6 sources are ignored here (-4)")
	}
	start, stop := d.Commands(g.Source.Is6())
	r := grant.Request{Name: d.Name, Source: g.Source, Ports: g.Open, Timeout: d.GrantTimeout(),
		Auth: parseIdentity(g.Identity), ID: g.ID, Deadline: g.Deadline, Origin: g.Origin}
	if start != "" {
		r.StartCmd = command.Expand(start, g.Source)
		if stop != "" {
			r.StopCmd = command.Expand(stop, g.Source)
		}
	}
	switch out := m.d.grants.Grant(r, m.now()); out {
	case grant.Granted:
		return g.ID, true
	case grant.Closed:
		return "", false
	case grant.Ignored:
		if len(g.Open) == 0 && start == "" {
			return refuse("nothing to open", "the door here has neither Open nor a start command")
		}
	}
	return "", true
}

// drop ends the grant a Delete names: a grant of another node, or one
// of this node's that another node revoked. This node's own grant whose
// key went because its lease ran out (its deadline passed) lives by its
// own deadline instead: a later one, extended while the group could not
// be told, is published again.
func (m *fleetMember) drop(e fleet.Event) {
	expired := e.Grant.ID != "" && !e.Grant.Deadline.After(m.now())
	var h grant.Grant
	ended := m.d.grants.RevokeID(e.ID, fleetReason, func(g grant.Grant) bool {
		h = g
		return g.Origin != "" || !expired
	})
	switch {
	case ended:
		m.log.Info(fmt.Sprintf("%s: %s: grant revoked in the fleet", h.Source, h.Door),
			event.Event{Kind: event.FleetRevoked, Door: h.Door, Source: h.Source, GrantID: h.ID}.Args(event.KeyOrigin, h.Origin)...)
	case h.ID != "" && h.Origin == "" && h.Shared != "" && h.Deadline.After(m.now()):
		m.pub.publish(fleet.Grant{ID: h.ID, Door: h.Shared, Source: h.Source, Open: h.Open, Deadline: h.Deadline,
			Identity: identity(h.Auth, h.User, h.Key)})
	}
}

// revokeTimeout bounds the fleet's part of `sesame revoke`.
const revokeTimeout = 10 * time.Second

// revoke is `sesame revoke ID|ADDRESS`: the grants here first (they end
// whatever etcd does), then the group's, on every node. An ID may be a
// prefix naming one grant, here or in the group.
func (m *fleetMember) revoke(target string) ([]string, error) {
	ids, lerr := m.d.grants.Revoke(target)
	if !m.active.Load() {
		return ids, lerr
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	var done []string
	var ferr error
	if addr, err := netip.ParseAddr(target); err == nil {
		done, ferr = m.f.RevokeSource(ctx, addr)
	} else {
		targets := ids
		if len(targets) == 0 {
			targets, ferr = m.resolve(ctx, target)
		}
		for _, id := range targets {
			switch err := m.f.Revoke(ctx, id); {
			case err == nil:
				done = append(done, id)
			case errors.Is(err, fleet.ErrNotFound):
			default:
				ferr = err
			}
		}
	}
	all := append(slices.Clone(ids), done...)
	sort.Strings(all)
	all = slices.Compact(all)
	if len(done) > 0 {
		m.log.Info(fmt.Sprintf("revoked in fleet %s: %s", m.group, strings.Join(done, ", ")), event.KeyKind, event.FleetRevoked, "group", m.group, "ids", strings.Join(done, ","))
	}
	switch {
	case ferr != nil && len(ids) > 0:
		// Revoked here; the publisher keeps trying for this node's own
		// grants, and the others' end at their deadlines.
		for _, id := range ids {
			m.pub.revoke(id)
		}
		m.log.Warn("revoked here, but not in the fleet yet: "+ferr.Error(), "group", m.group, "error", ferr)
		return all, nil
	case ferr != nil:
		return nil, fmt.Errorf("fleet %s: %w", m.group, ferr)
	case len(all) == 0 && lerr != nil:
		return nil, lerr
	case len(all) == 0:
		return nil, fmt.Errorf("no grant matches %q here or in fleet %s", target, m.group)
	}
	return all, nil
}

// resolve finds the one grant of the group whose id is target or begins
// with it (grant.MinIDPrefix characters at least).
func (m *fleetMember) resolve(ctx context.Context, target string) ([]string, error) {
	if len(target) < grant.MinIDPrefix {
		return nil, nil
	}
	snap, err := m.f.List(ctx)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, g := range snap.Grants {
		if g.ID == target {
			return []string{g.ID}, nil
		}
		if strings.HasPrefix(g.ID, target) {
			found = append(found, g.ID)
		}
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("%w: %q names %d grants of the group: %s", grant.ErrAmbiguousID, target, len(found), strings.Join(found, ", "))
	}
	return found, nil
}

// FleetGrants answers `sesame grants --fleet`: the group's live grants,
// with their origin and identity, and whether this node holds each.
func (m *fleetMember) FleetGrants(ctx context.Context) (control.FleetList, error) {
	if m.f == nil {
		if m.off != "" {
			return control.FleetList{}, errors.New("fleet not running: " + m.off)
		}
		return control.FleetList{}, errors.New("no fleet configured (Fleet_Endpoints)")
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	snap, err := m.f.List(ctx)
	if err != nil {
		return control.FleetList{}, err
	}
	here := make(map[string]bool)
	for _, g := range m.d.grants.List() {
		here[g.ID] = true
	}
	now := m.now()
	l := control.FleetList{Group: m.group, Node: m.node, Revision: snap.Rev, Grants: []control.FleetGrant{}}
	for _, g := range snap.Grants {
		if !g.Deadline.After(now) {
			continue
		}
		l.Grants = append(l.Grants, control.FleetGrant{ID: g.ID, Door: g.Door, Source: g.Source, Ports: knock.FormatSequence(g.Open),
			Deadline: g.Deadline, Origin: g.Origin, Identity: g.Identity, Here: here[g.ID]})
	}
	for _, err := range snap.Refused {
		l.Refused = append(l.Refused, err.Error())
	}
	return l, nil
}

// status is the membership for `sesame status`; nil without a fleet.
func (m *fleetMember) status() *control.FleetStatus {
	if m.group == "" {
		return nil
	}
	s := &control.FleetStatus{Group: m.group, Node: m.node, Off: m.off, Unpublished: m.pub.pending()}
	if m.f != nil {
		st := m.f.Status()
		s.Connected, s.Revision, s.Head, s.Lag = st.Connected, st.Revision, st.Head, st.Lag()
		s.LastContact, s.Error, s.Snapshots, s.Refused = st.LastContact, st.Err, st.Snapshots, st.Refused
	}
	return s
}

// summary is the membership for STATUS=; "" without a fleet.
func (m *fleetMember) summary() string {
	s := m.status()
	switch {
	case s == nil:
		return ""
	case s.Off != "":
		return "fleet " + s.Group + " OFF: " + s.Off
	case !s.Connected:
		return fmt.Sprintf("fleet %s NOT CONNECTED (revision %d): %s", s.Group, s.Revision, s.Error)
	}
	return fmt.Sprintf("fleet %s connected, revision %d, lag %d", s.Group, s.Revision, s.Lag)
}
