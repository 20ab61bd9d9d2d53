package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// ipTablesBackend keeps grants as ACCEPT rules in a SESAME chain of the
// filter table, jumped to from INPUT, through the iptables and ip6tables
// binaries of one flavour, and keeps a view of that chain in memory.
//
// A Grant, an extension or a Revoke plans against the view and runs
// iptables once: the one command, or one iptables-restore --noflush script
// that the kernel applies atomically (an extension deletes the old rule
// and appends the new one in the same transaction). With iptables-nft a
// grant that only appends rules (a new source) is one netlink
// transaction instead, the rules written as iptables-nft writes them
// (iptables_netlink_linux.go). The view is re-read
// with one `iptables -S` first when it may be stale: the family was never
// read, a command failed, or, for iptables-nft, the nf_tables generation
// moved since this backend's last command (someone changed a table); the
// chain and jump are then repaired in the same restore as the grant.
// iptables-legacy has no generation: a hand edit there is noticed when a
// command fails, and Reconcile (which re-reads every family) repairs the
// kernel and the view.
//
// iptables runs in the network namespace of the calling thread; ctx
// cancels a running command, and each waits at most lockWait for the
// xtables lock.
type ipTablesBackend struct {
	name string
	log  hclog.Logger
	now  func() time.Time
	run  xtRunFunc // execs iptables; tests record through it
	// appendNL appends iptables-nft rules over netlink (appendNetlink);
	// nil runs iptables for them too. Tests record through it.
	appendNL xtAppendFunc
	gen      func() (uint32, error) // the nf_tables generation (nftGen)

	mu sync.Mutex // guards all following fields and serialises every iptables command
	// fams[0] is IPv4, fams[1] IPv6.
	fams [2]ipFamily
	// withTime is cleared, with a warning, if the kernel lacks the time match.
	withTime bool
	// timeWorks: a change with the time match succeeded, so the kernel
	// ends this backend's rules at their deadlines (ExpiresInKernel).
	timeWorks bool
	// wantGen is the nf_tables generation the kernel has if nothing but this
	// backend's commands committed since the iptables-nft views were last
	// checked; meaningless unless genKnown.
	wantGen  uint32
	genKnown bool
}

type ipFamily struct {
	label   string // "iptables", "ip6tables-nft"..., for errors and logs
	bin     string // path of the iptables binary; "" when the family is unusable
	restore string // path of its iptables-restore
	nft     bool   // the binary is iptables-nft: its changes move the nf_tables generation
	err     error  // why the family is unusable
	// warnedPos is the jump position last warned about, so a jump that
	// stays below position 1 is reported once, not on every reconcile.
	warnedPos int
	// view is Sesame's rules in SESAME as this backend last wrote or read
	// them; each entry's handle is the rulespec that deletes it.
	view []entry
	// fresh: the view is what the kernel holds, and the chain and jump
	// exist, as far as this backend knows.
	fresh bool
	// nfFamily is the nf_tables family of an iptables-nft binary's tables.
	nfFamily nftables.TableFamily
	// nlFails counts netlink appends that failed in a row; at
	// netlinkFailLimit the family runs iptables for every change.
	nlFails int
}

func (f *ipFamily) usable() bool { return f.bin != "" }

// lockWait is how long each iptables command waits for the xtables lock.
const lockWait = 10 // seconds

var lockWaitArg = strconv.Itoa(lockWait)

// ipBinaries are the two binaries of each flavour (IPv4, IPv6); each has
// its iptables-restore beside it, named with a "-restore" suffix.
var ipBinaries = map[Kind][2]string{
	IPTables:       {"iptables", "ip6tables"},
	IPTablesNFT:    {"iptables-nft", "ip6tables-nft"},
	IPTablesLegacy: {"iptables-legacy", "ip6tables-legacy"},
}

// ipTablesFor opens the IPv4 and IPv6 binaries of an iptables flavour
// through go-iptables (the rescue's rules); a family whose binary is
// missing or unusable has nil and the reason.
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
	b := &ipTablesBackend{name: kind.String(), log: log, now: time.Now, run: runXtables, gen: nftGen, withTime: true,
		appendNL: appendNetlink}
	for i, bin := range ipBinaries[kind] {
		b.fams[i] = openFamily(b.run, bin)
		b.fams[i].nfFamily = [2]nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}[i]
	}
	if b.fams[0].err != nil {
		return nil, fmt.Errorf("firewall: %s backend: %w", kind, b.fams[0].err)
	}
	if b.fams[1].err != nil {
		log.Warn("IPv6 grants disabled", "backend", b.name, "error", b.fams[1].err)
	}
	return b, nil
}

// openFamily finds an iptables binary and its iptables-restore and asks
// the binary its version, which says whether it is iptables-nft.
func openFamily(run xtRunFunc, name string) ipFamily {
	f := ipFamily{label: name}
	bin, err := exec.LookPath(name)
	if err == nil {
		f.restore, err = exec.LookPath(name + "-restore")
	}
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		return f
	}
	ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
	defer cancel()
	out, err := run(ctx, []string{bin, "-V"}, nil)
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		return f
	}
	f.bin, f.nft = bin, strings.Contains(string(out), "nf_tables")
	return f
}

func (b *ipTablesBackend) Name() string { return b.name }

// ExpiresInKernel reports whether the rules stop matching at their
// deadline without Sesame: true once a change with the time match
// (--datestop) succeeded, false before and after the kernel refused it.
func (b *ipTablesBackend) ExpiresInKernel() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.withTime && b.timeWorks
}

func (b *ipTablesBackend) family(a netip.Addr) *ipFamily {
	if a.Is4() {
		return &b.fams[0]
	}
	return &b.fams[1]
}

// Setup creates the SESAME chain and its jump in both families and reads
// what a predecessor left into the view; guarded is not needed, since the
// admin's own policy does the dropping here. An IPv6 family that cannot be
// set up (no ip6tables, IPv6 disabled) is disabled with a warning; IPv4
// failing is an error.
func (b *ipTablesBackend) Setup(ctx context.Context, _ []knock.Port) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.ensureBaseLocked(ctx, true)
	return err
}

// EnsureBase re-reads both families, re-creates the chain and jump where
// missing and refreshes the view. The iptables backend has no Setup-only
// state, so it works before Setup too.
func (b *ipTablesBackend) EnsureBase(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ensureBaseLocked(ctx, false)
}

// sync is EnsureBase and List with one read of each family: what
// Reconcile runs every Reconcile_Interval.
func (b *ipTablesBackend) sync(ctx context.Context) (recreated bool, got []Grant, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	recreated, err = b.ensureBaseLocked(ctx, false)
	if err != nil {
		return recreated, nil, err
	}
	for i := range b.fams {
		if f := &b.fams[i]; f.usable() {
			got = append(got, grantsFromEntries(f.view)...)
		}
	}
	return recreated, got, nil
}

// Grant applies planGrant to the view with one iptables invocation: each
// new or rewritten rule is appended and the rule it replaces deleted in
// one transaction, so the address is admitted throughout and no duplicate
// is left. A flush since the last look must not make a fresh grant
// useless, so a stale view is re-read and the chain and jump repaired
// first (see ipTablesBackend).
func (b *ipTablesBackend) Grant(ctx context.Context, g Grant, now time.Time) error {
	g, err := checkGrant(g, now)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.family(g.Src)
	if !f.usable() {
		return fmt.Errorf("firewall.Grant %s %s: %w: %v", g.ID, g.Src, ErrFamilyUnavailable, f.err)
	}
	b.checkGenLocked()
	recreated, err := b.changeLocked(ctx, f, true, func(view []entry) ([]change, error) {
		return planGrant(view, g, splitPerProto(ipMaxPort), now)
	})
	if err != nil {
		return fmt.Errorf("firewall.Grant %s: %s: %w", g.ID, f.label, err)
	}
	if recreated {
		b.log.Warn("Sesame's chain or jump was missing and was recreated", "binary", f.label)
	}
	return nil
}

// Revoke removes g.ID's claims from both families (or only g.Src's, when
// set); rules no grant wants any more are deleted. A family whose view
// holds no claim of g.ID runs nothing.
func (b *ipTablesBackend) Revoke(ctx context.Context, g Grant) error {
	if !validID(g.ID) {
		return fmt.Errorf("firewall.Revoke: %w: id %q", ErrInvalidGrant, g.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.checkGenLocked()
	var errs []error
	for i := range b.fams {
		f := &b.fams[i]
		if !f.usable() || (g.Src.IsValid() && f != b.family(g.Src.Unmap())) {
			continue
		}
		_, err := b.changeLocked(ctx, f, false, func(view []entry) ([]change, error) {
			return planRevoke(view, g.ID, b.now())
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall.Revoke %s: %s: %w", g.ID, f.label, err))
		}
	}
	return errors.Join(errs...)
}

// List re-reads both families (one `iptables -S` each) into the view and
// returns the grants found.
func (b *ipTablesBackend) List(ctx context.Context) ([]Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.checkGenLocked()
	var all []Grant
	for i := range b.fams {
		f := &b.fams[i]
		if !f.usable() {
			continue
		}
		st, err := b.readLocked(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("firewall.List: %s: %w", f.label, err)
		}
		f.view, f.fresh = st.entries, st.baseOK()
		all = append(all, grantsFromEntries(st.entries)...)
	}
	return all, nil
}

// Teardown deletes every jump to SESAME from INPUT, then the chain with
// its rules, in one restore per family. Nothing else is touched.
func (b *ipTablesBackend) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for i := range b.fams {
		f := &b.fams[i]
		if !f.usable() {
			continue
		}
		if err := b.teardownLocked(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("firewall.Teardown: %s: %w", f.label, err))
		}
	}
	return errors.Join(errs...)
}
