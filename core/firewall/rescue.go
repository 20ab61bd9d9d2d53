package firewall

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// MinRescueAfter is the shortest heartbeat a rescue accepts: ipset keeps
// element timeouts in whole seconds.
const MinRescueAfter = time.Second

// maxRescueAfter is the longest timeout an ipset element can carry.
const maxRescueAfter = 2147483 * time.Second

// RescueSpec says what a rescue admits once its heartbeat lapses.
type RescueSpec struct {
	Ports []knock.Port   // TCP or UDP, 1-65535; none: the rescue is off
	From  []netip.Prefix // who may use it; none: anyone
	After time.Duration  // how long a heartbeat lasts; MinRescueAfter or more
}

// rescueSpec is a RescueSpec as the kernel objects are built from it:
// ports sorted and deduplicated, prefixes unmapped, masked, split by
// family, sorted and deduplicated.
type rescueSpec struct {
	ports        []knock.Port
	from4, from6 []netip.Prefix
	// anyFrom means From was empty (everyone). Without it, a family with
	// no prefixes gets no rescue at all.
	anyFrom bool
	after   time.Duration
}

func newRescueSpec(s RescueSpec) (rescueSpec, error) {
	r := rescueSpec{ports: sortPorts(s.Ports), anyFrom: len(s.From) == 0, after: s.After}
	for _, p := range r.ports {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return r, fmt.Errorf("%w: port %s (want TCP or UDP 1-65535)", ErrInvalidRescue, p)
		}
	}
	if s.After < MinRescueAfter || s.After > maxRescueAfter {
		return r, fmt.Errorf("%w: Rescue_After %s (want %s to %s)", ErrInvalidRescue, s.After, MinRescueAfter, maxRescueAfter)
	}
	for _, p := range s.From {
		if !p.IsValid() {
			return r, fmt.Errorf("%w: Rescue_From prefix %s", ErrInvalidRescue, p)
		}
		// The kernel sees IPv4 packets as IPv4: ::ffff:a.b.c.d/n (n >= 96)
		// is a.b.c.d/(n-96).
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			r.from4 = append(r.from4, p)
		} else {
			r.from6 = append(r.from6, p)
		}
	}
	for _, l := range []*[]netip.Prefix{&r.from4, &r.from6} {
		slices.SortFunc(*l, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		*l = slices.Compact(*l)
	}
	return r, nil
}

// seconds is after as ipset wants it: whole seconds, rounded up, so the
// kernel never opens the rescue earlier than asked.
func (s rescueSpec) seconds() uint32 { return uint32(math.Ceil(s.after.Seconds())) }

// maxPort is the highest port number, which bounds the ipset bitmap.
func (s rescueSpec) maxPort() uint16 {
	var m uint16
	for _, p := range s.ports {
		m = max(m, p.Num)
	}
	return m
}

// rescueState is what a family found of its rescue in the kernel.
type rescueState struct {
	problems []string      // what is missing or different; none: installed
	held     bool          // the hold marker is there
	left     time.Duration // least time left on the ports' heartbeats; 0 when one is missing
}

// rescueFamily keeps a rescue in one firewall family. Each method is one
// kernel change (one netlink batch, or one ipset restore plus the iptables
// commands it needs) or one read.
type rescueFamily interface {
	name() string
	state(ctx context.Context) (rescueState, error)
	held(ctx context.Context) (bool, error)
	install(ctx context.Context) error
	refresh(ctx context.Context) error
	open(ctx context.Context) error
	close(ctx context.Context) error
	remove(ctx context.Context) error
}

// Rescue is the kernel side of Sesame's fail-open rescue in one firewall
// family: the rule that admits the rescue ports unless a heartbeat is
// present, the heartbeat elements the kernel expires on their own, and the
// hold marker an admin sets to keep it open (see the package doc). It
// decides nothing: package rescue's Switch says when to refresh, open or
// close. Calls are not serialised here; the Switch serialises its own.
type Rescue struct {
	kind Kind
	spec rescueSpec
	fam  rescueFamily // nil when the rescue is off
	log  hclog.Logger
}

// NewRescue returns the rescue for spec in the family of kind (Auto runs
// Detect). With no ports it returns a Rescue that is off: it only removes
// rescues (RemoveOthers removes every family's), and its other changes
// fail. It validates spec and changes nothing in the kernel. A nil log
// discards.
func NewRescue(kind Kind, spec RescueSpec, log hclog.Logger) (*Rescue, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if len(spec.Ports) == 0 {
		return &Rescue{kind: Auto, log: log}, nil
	}
	s, err := newRescueSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("firewall.NewRescue: %w", err)
	}
	if kind == Auto {
		ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
		defer cancel()
		k, detail, err := Detect(ctx)
		if err != nil {
			return nil, fmt.Errorf("firewall.NewRescue: %w", err)
		}
		log.Debug("rescue firewall detected", "backend", k.String(), "detail", detail)
		kind = k
	}
	fam, err := newRescueFamily(kind, s, log)
	if err != nil {
		return nil, fmt.Errorf("firewall.NewRescue %v: %w", kind, err)
	}
	return &Rescue{kind: kind, spec: s, fam: fam, log: log}, nil
}

// Name is the firewall family ("nftables", "iptables-nft"...); "" when off.
func (r *Rescue) Name() string {
	if r.fam == nil {
		return ""
	}
	return r.fam.name()
}

// Spec is what the rescue admits, normalized: the ports sorted, the
// sources masked (IPv4 first; none means anyone), and how long a
// heartbeat lasts.
func (r *Rescue) Spec() (ports []knock.Port, from []netip.Prefix, after time.Duration) {
	return slices.Clone(r.spec.ports), append(slices.Clone(r.spec.from4), r.spec.from6...), r.spec.after
}

// State reads the rescue from the kernel: problems says what is missing or
// different (none: installed), held whether the hold marker is there, left
// the least time left on the ports' heartbeats (0 when one has lapsed or
// is missing). A rescue that is off reports nothing.
func (r *Rescue) State(ctx context.Context) (problems []string, held bool, left time.Duration, err error) {
	if r.fam == nil {
		return nil, false, 0, nil
	}
	st, err := r.fam.state(ctx)
	if err != nil {
		return nil, false, 0, fmt.Errorf("firewall.Rescue.State %s: %w", r.fam.name(), err)
	}
	return st.problems, st.held, st.left, nil
}

// Held reads only whether the hold marker is there: cheaper than State,
// for the check after each refresh.
func (r *Rescue) Held(ctx context.Context) (bool, error) {
	if r.fam == nil {
		return false, nil
	}
	held, err := r.fam.held(ctx)
	if err != nil {
		return false, fmt.Errorf("firewall.Rescue.Held %s: %w", r.fam.name(), err)
	}
	return held, nil
}

// Install creates the rescue's objects or repairs them, idempotently,
// adopting what a predecessor left; the heartbeat and the hold marker are
// kept when they are there. A heartbeat set it creates is born holding the
// heartbeat, so a fresh rescue is never open.
func (r *Rescue) Install(ctx context.Context) error {
	return r.do(ctx, "Install", rescueFamily.install)
}

// Refresh sets every port's heartbeat to expire After from now.
func (r *Rescue) Refresh(ctx context.Context) error {
	return r.do(ctx, "Refresh", rescueFamily.refresh)
}

// Open adds the hold marker and removes the heartbeat: the rescue is open
// now and stays open until Close.
func (r *Rescue) Open(ctx context.Context) error { return r.do(ctx, "Open", rescueFamily.open) }

// Close removes the hold marker and refreshes the heartbeat: the rescue is
// closed now, and opens again After from now unless refreshed.
func (r *Rescue) Close(ctx context.Context) error { return r.do(ctx, "Close", rescueFamily.close) }

// Remove deletes this family's rescue objects, and nothing of the grants
// backend's; objects already gone are not an error.
func (r *Rescue) Remove(ctx context.Context) error { return r.do(ctx, "Remove", rescueFamily.remove) }

func (r *Rescue) do(ctx context.Context, op string, f func(rescueFamily, context.Context) error) error {
	if r.fam == nil {
		return fmt.Errorf("firewall.Rescue.%s: %w", op, ErrNoRescuePorts)
	}
	if err := f(r.fam, ctx); err != nil {
		return fmt.Errorf("firewall.Rescue.%s %s: %w", op, r.fam.name(), err)
	}
	return nil
}

// RemoveOthers removes the rescue objects of every family but this one's
// (all of them when the rescue is off), so that a rescue an earlier config
// left never lapses open on its own. It returns what it removed.
func (r *Rescue) RemoveOthers(ctx context.Context) ([]string, error) {
	keep := Auto
	if r.fam != nil {
		keep = r.kind
	}
	return removeRescues(ctx, keep)
}

// RemoveRescues removes every rescue from every family, for uninstalling,
// and returns what it removed. The grants backend's objects stay.
func RemoveRescues(ctx context.Context) ([]string, error) { return removeRescues(ctx, Auto) }
