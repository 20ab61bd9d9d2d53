package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// Grant is one native grant: Src may reach Ports until Deadline (wall clock).
type Grant struct {
	ID       string     // unique per grant, [A-Za-z0-9_-], at most 32 chars; stable across restarts
	Door     string     // door name, informational; not stored in the kernel, so List leaves it empty
	Src      netip.Addr // IPv4 or IPv6 knocker; an IPv4-mapped IPv6 address is unmapped
	Ports    []knock.Port
	Deadline time.Time
}

func (g Grant) String() string {
	ports := make([]string, len(g.Ports))
	for i, p := range g.Ports {
		ports[i] = p.String()
	}
	return fmt.Sprintf("%s(%s -> %s until %s)", g.ID, g.Src, strings.Join(ports, ","), g.Deadline.UTC().Format(time.RFC3339))
}

// Backend holds grants in one kind of firewall. Implementations serialise
// their own kernel changes, so the methods may be called from several
// goroutines.
type Backend interface {
	Name() string
	// Setup creates Sesame's own objects, idempotently; it adopts (does not
	// duplicate) objects a crashed predecessor left. guarded is every port
	// any door can open; backends that own the drop for those ports (nftables)
	// use it, the others ignore it.
	Setup(ctx context.Context, guarded []knock.Port) error
	// Grant allows g.Src to reach g.Ports until g.Deadline. Granting an
	// address that already holds the same grant ID (or the same Src+Ports)
	// replaces/extends its deadline without duplicating rules and without a
	// moment where the address is not allowed.
	Grant(ctx context.Context, g Grant, now time.Time) error
	// Revoke removes the grant; one that is already gone is not an error.
	Revoke(ctx context.Context, g Grant) error
	// List returns the grants present in the kernel (ID, Src, Ports,
	// Deadline; Door if recoverable).
	List(ctx context.Context) ([]Grant, error)
	// Teardown removes only Sesame's own objects (never the admin's rules).
	Teardown(ctx context.Context) error
}

// StopKeeper is implemented by backends whose objects should stay in the
// kernel when the daemon stops cleanly: their grants expire there on their
// own, and removing their objects would open what they guard. Backends
// without it are torn down on a clean stop (their grants cannot expire
// without the daemon, so removing them fails closed).
type StopKeeper interface {
	KeepOnStop() bool
}

// PortGuard is implemented by backends that own the drop for the ports
// doors open (nftables): once Setup has run, new connections to the
// guarded ports are dropped for every source without a grant, whatever
// the admin's own rules allow. Backends without it only add accepts in
// front of the admin's rules.
type PortGuard interface {
	GuardsPorts() bool
}

// BaseKeeper is implemented by backends whose base objects (a chain and its
// jump, a table) can vanish under them when someone flushes the firewall.
// Reconcile uses it to put them back; backends without base objects need
// not implement it.
type BaseKeeper interface {
	// EnsureBase re-creates whatever Setup made that is missing or damaged,
	// with the guarded ports Setup was last given, and reports whether it
	// had to. Before any Setup it returns ErrNotSetUp.
	EnsureBase(ctx context.Context) (recreated bool, err error)
}

// Kind names a backend, as the config's `Firewall =` option spells it.
type Kind int

const (
	Auto           Kind = iota // decide with Detect
	IPTables                   // iptables/ip6tables as found on PATH (Debian's alternatives pick nft or legacy)
	IPTablesNFT                // iptables-nft/ip6tables-nft explicitly
	IPTablesLegacy             // iptables-legacy/ip6tables-legacy explicitly
	NFTables                   // native nftables over netlink, table inet sesame
)

var kindNames = []string{
	Auto:           "auto",
	IPTables:       "iptables",
	IPTablesNFT:    "iptables-nft",
	IPTablesLegacy: "iptables-legacy",
	NFTables:       "nftables",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParseKind accepts auto, iptables, iptables-nft, iptables-legacy and
// nftables in any case.
func ParseKind(s string) (Kind, error) {
	if i := slices.Index(kindNames, strings.ToLower(strings.TrimSpace(s))); i >= 0 {
		return Kind(i), nil
	}
	return 0, fmt.Errorf("firewall: unknown kind %q (want %s)", s, strings.Join(kindNames, ", "))
}

// maxIDLen bounds grant IDs so that several claims fit in one kernel
// comment (see claims.go).
const maxIDLen = 32

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// normalize validates g and returns it with Src unmapped and Ports sorted
// and deduplicated, so that every backend stores one canonical form.
// checkGrant is what every backend's Grant does first: g normalized, or
// an error when it is invalid or its deadline is not after now (a kernel
// timeout of zero would mean "forever").
func checkGrant(g Grant, now time.Time) (Grant, error) {
	g, err := normalize(g)
	if err != nil {
		return g, fmt.Errorf("firewall.Grant: %w", err)
	}
	if !g.Deadline.After(now) {
		return g, fmt.Errorf("firewall.Grant %s: %w", g.ID, ErrExpired)
	}
	return g, nil
}

func normalize(g Grant) (Grant, error) {
	if !validID(g.ID) {
		return g, fmt.Errorf("%w: id %q (want 1-%d of [A-Za-z0-9_-])", ErrInvalidGrant, g.ID, maxIDLen)
	}
	if !g.Src.IsValid() {
		return g, fmt.Errorf("%w: %s: no source address", ErrInvalidGrant, g.ID)
	}
	g.Src = g.Src.Unmap().WithZone("")
	if g.Src.IsUnspecified() || g.Src.IsMulticast() {
		return g, fmt.Errorf("%w: %s: source %s cannot knock", ErrInvalidGrant, g.ID, g.Src)
	}
	if len(g.Ports) == 0 {
		return g, fmt.Errorf("%w: %s: no ports", ErrInvalidGrant, g.ID)
	}
	for _, p := range g.Ports {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return g, fmt.Errorf("%w: %s: port %s", ErrInvalidGrant, g.ID, p)
		}
	}
	g.Ports = sortPorts(g.Ports)
	if g.Deadline.IsZero() {
		return g, fmt.Errorf("%w: %s: no deadline", ErrInvalidGrant, g.ID)
	}
	return g, nil
}

// sortPorts returns a sorted copy without duplicates: TCP before UDP, then
// by number.
func sortPorts(ps []knock.Port) []knock.Port {
	out := slices.Clone(ps)
	slices.SortFunc(out, comparePorts)
	return slices.Compact(out)
}

func comparePorts(a, b knock.Port) int {
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	return int(a.Num) - int(b.Num)
}

// untilSecs is how a deadline is stored in the kernel: Unix seconds rounded
// up, so that a stored deadline is never earlier than the real one (a
// grant may outlive its deadline by under a second, never fall short).
func untilSecs(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// SameDeadline reports whether two deadlines are equal at the precision
// the kernel keeps (whole seconds, rounded up).
func SameDeadline(a, b time.Time) bool { return untilSecs(a) == untilSecs(b) }
