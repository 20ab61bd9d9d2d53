package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// nftBackend keeps grants as elements of the allow4/allow6 sets of table
// inet sesame, each with a kernel timeout, so a grant lapses at its
// deadline even if Sesame is not running. It talks netlink directly (no
// nft binary) and opens a fresh netlink socket per operation, in the
// network namespace of the calling thread. A Grant for a source with no
// element reads nothing but the nf_tables generation before its batch
// (see held).
type nftBackend struct {
	log  hclog.Logger
	now  func() time.Time
	dial func() (*nftables.Conn, error) // a netlink connection; tests record instead
	gen  func() (uint32, error)         // the nf_tables generation (nftGen); tests model it

	mu sync.Mutex // guards all following fields and serialises every batch
	// guarded is the sorted port list of the last Setup; nil before Setup.
	guarded []knock.Port
	setUp   bool
	// wantGen is the nf_tables generation the kernel has if nothing but
	// this backend's own batches committed since ensureBase last found or
	// made table inet sesame whole; meaningless unless genKnown. A Grant
	// that reads this generation skips the inspection.
	wantGen  uint32
	genKnown bool
	// held counts, per allow set (index 0 allow4, 1 allow6), the
	// elements of each source as this backend knows them; meaningless
	// unless heldKnown. A read of the set rebuilds it and this backend's
	// own batches keep it; it is dropped when ensureBaseLocked inspects
	// (the generation shows a change that was not this backend's, the
	// rescue's heartbeats included) and when a batch fails. So a source
	// held counts none of has no element in the kernel, and a Grant for
	// it needs no read of the set: it only adds. Elements that expired
	// in the kernel stay counted (their expiry moves no generation),
	// which only means a Grant for that source reads the set.
	held      [2]map[netip.Addr]int
	heldKnown [2]bool
}

// maxHeld bounds held: past it (sources whose elements expired are
// never removed from it), the next read of the set rebuilds it.
const maxHeld = 4096

func family(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// absentLocked reports whether src surely has no element in its allow
// set: held is known and counts none.
func (b *nftBackend) absentLocked(src netip.Addr) bool {
	f := family(src.Is6())
	return b.heldKnown[f] && b.held[f][src] == 0
}

// readLocked makes es, just read from the allow set of v6, what held
// knows of it.
func (b *nftBackend) readLocked(v6 bool, es []entry) {
	f := family(v6)
	m := make(map[netip.Addr]int, len(es))
	for _, e := range es {
		m[e.Src]++
	}
	b.held[f], b.heldKnown[f] = m, len(m) <= maxHeld
}

// forgetHeldLocked drops what held knows: the next Grant reads the set.
func (b *nftBackend) forgetHeldLocked() { b.heldKnown = [2]bool{} }

// minTimeout keeps every element timeout at least a few jiffies long: the
// kernel converts milliseconds to jiffies rounding down, and an element
// whose timeout rounds to zero never expires.
const minTimeout = 50 * time.Millisecond

func newNFTables(log hclog.Logger) *nftBackend {
	return &nftBackend{log: log, now: time.Now, dial: dialNetlink, gen: nftGen}
}

func (b *nftBackend) Name() string { return NFTables.String() }

// KeepOnStop: grants expire in the kernel, and table inet sesame is what
// drops the guarded ports; removing it on a stop would open them to
// everyone the admin's ruleset accepts.
func (b *nftBackend) KeepOnStop() bool { return true }

// GuardsPorts: chain guard drops the guarded ports for every source not
// in the allow sets.
func (b *nftBackend) GuardsPorts() bool { return true }

// ExpiresInKernel: every grant is a set element with a kernel timeout.
func (b *nftBackend) ExpiresInKernel() bool { return true }

var (
	_ StopKeeper = (*nftBackend)(nil)
	_ PortGuard  = (*nftBackend)(nil)
)

func (b *nftBackend) conn() (*nftables.Conn, error) { return b.dial() }

// Setup creates table inet sesame, or adopts the one a predecessor left
// (keeping its grants), and sets the guarded set to exactly guarded in one
// atomic batch.
func (b *nftBackend) Setup(ctx context.Context, guarded []knock.Port) error {
	for _, p := range guarded {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return fmt.Errorf("firewall.Setup nftables: guarded port %s: %w", p, ErrInvalidGrant)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.guarded = sortPorts(guarded)
	if b.guarded == nil {
		b.guarded = []knock.Port{}
	}
	b.setUp = true
	if _, err := b.ensureBaseLocked(ctx, false); err != nil {
		return fmt.Errorf("firewall.Setup nftables: %w", err)
	}
	return nil
}

// EnsureBase repairs table inet sesame with the guarded ports of the last
// Setup; before Setup it returns ErrNotSetUp.
func (b *nftBackend) EnsureBase(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.setUp {
		return false, ErrNotSetUp
	}
	return b.ensureBaseLocked(ctx, false)
}

// listEntries reads one allow set. A missing table or set has no entries.
func (b *nftBackend) listEntries(c *nftables.Conn, v6 bool) ([]entry, error) {
	s := allowSet(v6)
	els, err := c.GetSetElements(s)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", s.Name, err)
	}
	var es []entry
	for _, el := range els {
		k, err := parseAllowKey(el.Key)
		if err != nil {
			b.log.Warn("ignoring unreadable element", "set", s.Name, "error", err)
			continue
		}
		cs, ok := parseComment(el.Comment)
		if !ok {
			b.log.Warn("ignoring element without Sesame's comment", "set", s.Name, "element", k.String(), "comment", el.Comment)
			continue
		}
		es = append(es, entry{entryKey: k, Claims: cs})
	}
	return es, nil
}

// Grant repairs the table first (a flush since the last reconcile must not
// make a fresh grant useless), unless the nf_tables generation shows that
// nothing but this backend changed any table since it last did; then it
// lists the allow set and applies the plan in one batch: a
// rewritten element is deleted and re-added with its new timeout and
// comment atomically (re-adding alone would keep the old comment, and on
// kernels before 6.12 the old timeout too).
func (b *nftBackend) Grant(ctx context.Context, g Grant, now time.Time) error {
	g, err := checkGrant(g, now)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.setUp {
		return fmt.Errorf("firewall.Grant %s: %w", g.ID, ErrNotSetUp)
	}
	if recreated, err := b.ensureBaseLocked(ctx, true); err != nil {
		return fmt.Errorf("firewall.Grant %s: %w", g.ID, err)
	} else if recreated {
		b.log.Warn("table inet sesame was missing or damaged and was rebuilt")
	}
	for _, p := range g.Ports {
		if _, found := slices.BinarySearchFunc(b.guarded, p, comparePorts); !found {
			b.log.Warn("granting a port Sesame does not guard; the admin's rules alone decide it", "grant", g.ID, "port", p.String())
		}
	}
	first := true
	err = b.retry(ctx, func(c *nftables.Conn) error {
		// A source with no element needs no read: nothing of it can be
		// in the set, and a grant's claims are only ever on its own
		// source's elements, so the plan from the whole set would be
		// the same adds. A retry always reads.
		var es []entry
		if !first || !b.absentLocked(g.Src) {
			var err error
			if es, err = b.listEntries(c, g.Src.Is6()); err != nil {
				return err
			}
			b.readLocked(g.Src.Is6(), es)
		}
		first = false
		plan, err := planGrant(es, g, splitPerPort, now)
		if err != nil {
			return err
		}
		return b.apply(c, g.Src.Is6(), plan, now)
	})
	if err != nil {
		return fmt.Errorf("firewall.Grant %s: %w", g.ID, err)
	}
	return nil
}

// retry runs op once more if the batch failed with ENOENT: an element can
// expire in the kernel between listing and deleting it.
func (b *nftBackend) retry(ctx context.Context, op func(*nftables.Conn) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var c *nftables.Conn
		if c, err = b.conn(); err != nil {
			return err
		}
		if err = op(c); err == nil || !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return err
}

func (b *nftBackend) apply(c *nftables.Conn, v6 bool, plan []change, now time.Time) error {
	if len(plan) == 0 {
		return nil
	}
	s := allowSet(v6)
	for _, ch := range plan {
		if ch.Old != nil {
			k, err := allowKey(ch.Old.entryKey)
			if err != nil {
				return err
			}
			if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: k}}); err != nil {
				return fmt.Errorf("%s: %w", ch, err)
			}
		}
		if ch.New != nil {
			k, err := allowKey(ch.New.entryKey)
			if err != nil {
				return err
			}
			timeout := max(ch.New.Expiry.Sub(now).Round(time.Millisecond), minTimeout)
			el := nftables.SetElement{Key: k, Timeout: timeout, Comment: ch.New.comment()}
			if err := c.SetAddElements(s, []nftables.SetElement{el}); err != nil {
				return fmt.Errorf("%s: %w", ch, err)
			}
		}
	}
	err := c.Flush()
	b.committedLocked(err)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	if f := family(v6); b.heldKnown[f] {
		for _, ch := range plan {
			if ch.Old != nil {
				if b.held[f][ch.Old.Src]--; b.held[f][ch.Old.Src] <= 0 {
					delete(b.held[f], ch.Old.Src)
				}
			}
			if ch.New != nil {
				b.held[f][ch.New.Src]++
			}
		}
		b.heldKnown[f] = len(b.held[f]) <= maxHeld
	}
	return nil
}

func (b *nftBackend) Revoke(ctx context.Context, g Grant) error {
	if !validID(g.ID) {
		return fmt.Errorf("firewall.Revoke: %w: id %q", ErrInvalidGrant, g.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, v6 := range []bool{false, true} {
		if g.Src.IsValid() && g.Src.Unmap().Is6() != v6 {
			continue
		}
		err := b.retry(ctx, func(c *nftables.Conn) error {
			es, err := b.listEntries(c, v6)
			if err != nil {
				return err
			}
			b.readLocked(v6, es)
			now := b.now()
			plan, err := planRevoke(es, g.ID, now)
			if err != nil {
				return err
			}
			return b.apply(c, v6, plan, now)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall.Revoke %s: %w", g.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (b *nftBackend) List(ctx context.Context) ([]Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("firewall.List: %w", err)
	}
	var es []entry
	for _, v6 := range []bool{false, true} {
		e, err := b.listEntries(c, v6)
		if err != nil {
			return nil, fmt.Errorf("firewall.List: %w", err)
		}
		es = append(es, e...)
	}
	return grantsFromEntries(es), nil
}

// Teardown deletes table inet sesame and everything in it; a table that
// is already gone is not an error.
func (b *nftBackend) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := b.conn()
	if err != nil {
		return fmt.Errorf("firewall.Teardown: %w", err)
	}
	c.DelTable(sesameTable)
	b.genKnown = false // the next Grant rebuilds the table
	b.forgetHeldLocked()
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("firewall.Teardown: delete table inet %s: %w", nftTable, err)
	}
	return nil
}
