package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// ipTablesBackend keeps grants as ACCEPT rules in a SESAME chain of the
// filter table, jumped to from INPUT, through the iptables and ip6tables
// binaries of one flavour (go-iptables execs them with --wait).
//
// go-iptables takes no context: ctx is checked between commands only, and
// each command waits at most lockWait for the xtables lock.
type ipTablesBackend struct {
	name string
	log  hclog.Logger
	now  func() time.Time

	mu sync.Mutex // guards all following fields and serialises every iptables command
	// fams[0] is IPv4, fams[1] IPv6; a family whose binary or kernel table
	// is unusable has ipt nil and err saying why.
	fams [2]ipFamily
	// withTime is cleared, with a warning, if the kernel lacks the time match.
	withTime bool
}

type ipFamily struct {
	label string // "iptables" or "ip6tables", for errors
	ipt   *iptables.IPTables
	err   error
	// warnedPos is the jump position last warned about, so a jump that
	// stays below position 1 is reported once, not on every reconcile.
	warnedPos int
}

// lockWait is how long each iptables command waits for the xtables lock.
const lockWait = 10 // seconds

// ipBinaries are the two binaries of each flavour (IPv4, IPv6).
var ipBinaries = map[Kind][2]string{
	IPTables:       {"iptables", "ip6tables"},
	IPTablesNFT:    {"iptables-nft", "ip6tables-nft"},
	IPTablesLegacy: {"iptables-legacy", "ip6tables-legacy"},
}

// ipTablesFor opens the IPv4 and IPv6 binaries of an iptables flavour; a
// family whose binary is missing or unusable has nil and the reason.
func ipTablesFor(kind Kind) (ipts [2]*iptables.IPTables, errs [2]error) {
	bins := ipBinaries[kind]
	for i, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		ipt, err := iptables.New(iptables.Path(bins[i]), iptables.IPFamily(proto), iptables.Timeout(lockWait))
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", bins[i], err)
			continue
		}
		ipts[i] = ipt
	}
	return ipts, errs
}

func newIPTables(kind Kind, log hclog.Logger) (*ipTablesBackend, error) {
	b := &ipTablesBackend{name: kind.String(), log: log, now: time.Now, withTime: true}
	ipts, errs := ipTablesFor(kind)
	for i := range b.fams {
		b.fams[i] = ipFamily{label: ipBinaries[kind][i], ipt: ipts[i], err: errs[i]}
	}
	if b.fams[0].err != nil {
		return nil, fmt.Errorf("firewall: %s backend: %w", kind, b.fams[0].err)
	}
	if b.fams[1].err != nil {
		log.Warn("IPv6 grants disabled", "backend", b.name, "error", b.fams[1].err)
	}
	return b, nil
}

func (b *ipTablesBackend) Name() string { return b.name }

func (b *ipTablesBackend) family(a netip.Addr) *ipFamily {
	if a.Is4() {
		return &b.fams[0]
	}
	return &b.fams[1]
}

// Setup creates the SESAME chain and its jump in both families; guarded is
// not needed, since the admin's own policy does the dropping here. An
// IPv6 family that cannot be set up (no ip6tables, IPv6 disabled) is
// disabled with a warning; IPv4 failing is an error.
func (b *ipTablesBackend) Setup(ctx context.Context, _ []knock.Port) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.ensureBaseLocked(ctx, true)
	return err
}

// EnsureBase re-creates the chain and jump where missing. The iptables
// backend has no Setup-only state, so it works before Setup too.
func (b *ipTablesBackend) EnsureBase(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ensureBaseLocked(ctx, false)
}

// listEntries reads Sesame's rules of one family. A missing chain has none.
func (b *ipTablesBackend) listEntries(f *ipFamily) ([]entry, error) {
	lines, err := f.ipt.List(ipTable, ipChain)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", ipChain, err)
	}
	var es []entry
	for _, l := range lines {
		e, ok, err := parseRule(l)
		if err != nil {
			b.log.Warn("ignoring unreadable rule in Sesame's chain", "binary", f.label, "rule", l, "error", err)
			continue
		}
		if ok {
			es = append(es, e)
		}
	}
	return es, nil
}

// Grant makes the base objects whole first (a flush since the last
// reconcile must not make a fresh grant useless), then applies the plan:
// each new or rewritten rule is appended before the rule it replaces is
// deleted, so the address is admitted throughout.
func (b *ipTablesBackend) Grant(ctx context.Context, g Grant, now time.Time) error {
	g, err := checkGrant(g, now)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.family(g.Src)
	if f.ipt == nil {
		return fmt.Errorf("firewall.Grant %s %s: %w: %v", g.ID, g.Src, ErrFamilyUnavailable, f.err)
	}
	if recreated, err := b.ensureFamily(f); err != nil {
		return fmt.Errorf("firewall.Grant %s: %s: %w", g.ID, f.label, err)
	} else if recreated {
		b.log.Warn("Sesame's chain or jump was missing and was recreated", "binary", f.label)
	}
	es, err := b.listEntries(f)
	if err != nil {
		return fmt.Errorf("firewall.Grant %s: %s: %w", g.ID, f.label, err)
	}
	plan, err := planGrant(es, g, splitPerProto(ipMaxPort), now)
	if err != nil {
		return fmt.Errorf("firewall.Grant %s: %w", g.ID, err)
	}
	if err := b.apply(ctx, f, plan); err != nil {
		return fmt.Errorf("firewall.Grant %s: %s: %w", g.ID, f.label, err)
	}
	return nil
}

// Revoke removes g.ID's claims from both families (or only g.Src's, when
// set); rules no grant wants any more are deleted.
func (b *ipTablesBackend) Revoke(ctx context.Context, g Grant) error {
	if !validID(g.ID) {
		return fmt.Errorf("firewall.Revoke: %w: id %q", ErrInvalidGrant, g.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for i := range b.fams {
		f := &b.fams[i]
		if f.ipt == nil || (g.Src.IsValid() && f != b.family(g.Src.Unmap())) {
			continue
		}
		es, err := b.listEntries(f)
		if err == nil {
			var plan []change
			if plan, err = planRevoke(es, g.ID, b.now()); err == nil {
				err = b.apply(ctx, f, plan)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall.Revoke %s: %s: %w", g.ID, f.label, err))
		}
	}
	return errors.Join(errs...)
}

func (b *ipTablesBackend) apply(ctx context.Context, f *ipFamily, plan []change) error {
	for _, c := range plan {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.New != nil {
			if err := b.appendRule(f, *c.New); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
		}
		if c.Old != nil {
			old := ruleSpec(*c.Old, b.withTime)
			if h, ok := c.Old.handle.([]string); ok {
				old = h
			}
			if c.New != nil && strings.Join(old, "\x00") == strings.Join(ruleSpec(*c.New, b.withTime), "\x00") {
				continue // identical text: deleting would remove the one just added
			}
			if err := f.ipt.Delete(ipTable, ipChain, old...); err != nil && !isNotExist(err) {
				return fmt.Errorf("%s: %w", c, err)
			}
		}
	}
	return nil
}

// appendRule appends e's rule. If the kernel or iptables lacks the time
// match, it says so once and carries on without it: Reconcile still
// removes expired rules, only the belt-and-braces stop is lost.
func (b *ipTablesBackend) appendRule(f *ipFamily, e entry) error {
	err := f.ipt.Append(ipTable, ipChain, ruleSpec(e, b.withTime)...)
	if err == nil || !b.withTime || !strings.Contains(err.Error(), "match `time'") {
		return err
	}
	b.log.Warn("iptables time match unavailable; expired rules now rely on reconcile alone", "binary", f.label, "error", err)
	b.withTime = false
	return f.ipt.Append(ipTable, ipChain, ruleSpec(e, false)...)
}

func (b *ipTablesBackend) List(ctx context.Context) ([]Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []Grant
	for i := range b.fams {
		f := &b.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		es, err := b.listEntries(f)
		if err != nil {
			return nil, fmt.Errorf("firewall.List: %s: %w", f.label, err)
		}
		all = append(all, grantsFromEntries(es)...)
	}
	return all, nil
}

// Teardown deletes every jump to SESAME from INPUT, then the chain with
// its rules. Nothing else is touched.
func (b *ipTablesBackend) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for i := range b.fams {
		f := &b.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeChain(f.ipt, ipChain); err != nil {
			errs = append(errs, fmt.Errorf("firewall.Teardown: %s: %w", f.label, err))
		}
	}
	return errors.Join(errs...)
}
