package failsafe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/firewall"
)

// iptGate keeps the rescue in one iptables flavour (both families) with
// its heartbeat in an ipset. go-iptables and ipset are programs: they run
// in the network namespace of the calling thread, and take no context
// (ctx is checked between commands; iptables waits at most lockWait
// seconds for the xtables lock).
type iptGate struct {
	name  string
	spec  spec
	fams  [2]iptFam // IPv4, IPv6
	ipset string    // path of the ipset binary
	log   hclog.Logger
	// warnedPos is the jump position last warned about per family, so a
	// jump someone pushed down is reported once, not every heartbeat.
	warnedPos [2]int
}

type iptFam struct {
	label string
	ipt   *iptables.IPTables // nil when the family is unusable
	v6    bool
}

const lockWait = 10 // seconds

// iptBinaries are each flavour's two binaries, as core/firewall runs them.
var iptBinaries = map[firewall.Kind][2]string{
	firewall.IPTables:       {"iptables", "ip6tables"},
	firewall.IPTablesNFT:    {"iptables-nft", "ip6tables-nft"},
	firewall.IPTablesLegacy: {"iptables-legacy", "ip6tables-legacy"},
}

func newIPTGate(kind firewall.Kind, s spec, log hclog.Logger) (*iptGate, error) {
	ipsetPath, err := exec.LookPath("ipset")
	if err != nil {
		return nil, fmt.Errorf("%w: ipset not installed (apt-get install ipset): %v", ErrNoBackend, err)
	}
	g := &iptGate{name: kind.String(), spec: s, ipset: ipsetPath, log: log}
	bins := iptBinaries[kind]
	for i, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		f := &g.fams[i]
		f.label, f.v6 = bins[i], i == 1
		f.ipt, err = iptables.New(iptables.Path(bins[i]), iptables.IPFamily(proto), iptables.Timeout(lockWait))
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("%w: %s: %v", ErrNoBackend, bins[i], err)
			}
			log.Warn("IPv6 rescue disabled", "binary", bins[i], "error", err)
			f.ipt = nil
		}
	}
	return g, nil
}

func (g *iptGate) Name() string { return g.name }

// ipsetRun runs ipset with args and stdin; errSetMissing wraps "does not
// exist".
func (g *iptGate) ipsetRun(ctx context.Context, stdin string, args ...string) (string, error) {
	return runIpset(ctx, g.ipset, stdin, args...)
}

var errSetMissing = errors.New("set does not exist")

func runIpset(ctx context.Context, path, stdin string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "does not exist") {
			return "", fmt.Errorf("ipset %s: %w: %s", strings.Join(args, " "), errSetMissing, msg)
		}
		return "", fmt.Errorf("ipset %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// dump reads the set; ok is false when it does not exist.
func (g *iptGate) dump(ctx context.Context) (d ipsetDump, ok bool, err error) {
	out, err := g.ipsetRun(ctx, "", "save", ipsetName)
	if errors.Is(err, errSetMissing) {
		return d, false, nil
	}
	if err != nil {
		return d, false, err
	}
	d, err = parseIpsetSave(out, ipsetName)
	return d, err == nil, err
}

// famState is one family's chain and jump as found.
type famState struct {
	chain    bool
	rulesOK  bool
	jumps    []int // positions of our jumps in INPUT
	block    int   // length of the block of Sesame jumps at the top
	problems []string
}

func (g *iptGate) inspectFam(f *iptFam) (famState, error) {
	var st famState
	exists, err := f.ipt.ChainExists(iptTable, iptChain)
	if err != nil {
		return st, fmt.Errorf("%s: check chain %s: %w", f.label, iptChain, err)
	}
	st.chain = exists
	if !exists {
		st.problems = append(st.problems, f.label+": chain "+iptChain+" missing")
	} else {
		lines, err := f.ipt.List(iptTable, iptChain)
		if err != nil {
			return st, fmt.Errorf("%s: list %s: %w", f.label, iptChain, err)
		}
		tags, err := ruleTags(lines)
		if err != nil {
			return st, fmt.Errorf("%s: %w", f.label, err)
		}
		var want []string
		for _, r := range iptRules(g.spec, f.v6) {
			want = append(want, r.tag)
		}
		st.rulesOK = slices.Equal(tags, want)
		if !st.rulesOK {
			st.problems = append(st.problems, f.label+": chain "+iptChain+" has other rules")
		}
	}
	lines, err := f.ipt.List(iptTable, iptInput)
	if err != nil {
		return st, fmt.Errorf("%s: list %s: %w", f.label, iptInput, err)
	}
	st.jumps, st.block = jumpPlace(lines)
	switch len(st.jumps) {
	case 0:
		st.problems = append(st.problems, f.label+": no jump from INPUT to "+iptChain)
	case 1:
	default:
		st.problems = append(st.problems, f.label+": "+strconv.Itoa(len(st.jumps))+" jumps to "+iptChain)
	}
	return st, nil
}

func (g *iptGate) State(ctx context.Context) (kernelState, error) {
	var k kernelState
	d, ok, err := g.dump(ctx)
	if err != nil {
		return k, fmt.Errorf("failsafe: %s state: %w", g.name, err)
	}
	if !ok {
		k.Problems = append(k.Problems, "ipset "+ipsetName+" missing")
	} else {
		if !d.Header.fits(g.spec) {
			k.Problems = append(k.Problems, fmt.Sprintf("ipset %s is %s range %d-%d, want bitmap:port range 0-%d with timeouts",
				ipsetName, d.Header.Type, d.Header.From, d.Header.To, g.spec.maxPort()))
		}
		k.Held, k.Left = aliveFromDump(d, g.spec.Ports)
	}
	for i := range g.fams {
		f := &g.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return k, err
		}
		st, err := g.inspectFam(f)
		if err != nil {
			return k, fmt.Errorf("failsafe: %s state: %w", g.name, err)
		}
		k.Problems = append(k.Problems, st.problems...)
	}
	k.Installed = len(k.Problems) == 0
	return k, nil
}

// Install creates the set, the chains, their rules and the jumps, or
// repairs them. A set that cannot carry the spec (a port above its range)
// is replaced with its heartbeat and hold marker copied over; the rules
// that use it are taken out first, since the kernel will not destroy a
// set in use.
func (g *iptGate) Install(ctx context.Context) error {
	if err := g.install(ctx); err != nil {
		return fmt.Errorf("failsafe: %s install: %w", g.name, err)
	}
	return nil
}

func (g *iptGate) install(ctx context.Context) error {
	d, ok, err := g.dump(ctx)
	if err != nil {
		return err
	}
	if ok && !d.Header.fits(g.spec) {
		for i := range g.fams {
			if f := &g.fams[i]; f.ipt != nil {
				if err := clearChain(f); err != nil {
					return err
				}
			}
		}
		if _, err := g.ipsetRun(ctx, "", "destroy", ipsetName); err != nil {
			return fmt.Errorf("%w (another iptables flavour may still use it: sesame rescue remove)", err)
		}
		ok = false
	}
	if !ok {
		top := int(g.spec.maxPort())
		lines := fmt.Sprintf("create %s bitmap:port range 0-%d timeout %d\n", ipsetName, top, g.spec.seconds())
		if len(d.Elements) == 0 {
			// A new set is born holding the heartbeat, before the rules
			// that read it exist: a fresh rescue is never open.
			for _, p := range g.spec.Ports {
				lines += fmt.Sprintf("add %s %d timeout %d\n", ipsetName, p.Num, g.spec.seconds())
			}
		}
		for port, left := range d.Elements {
			if int(port) > top {
				continue
			}
			if left < 0 {
				left = 0
			}
			lines += fmt.Sprintf("add %s %d timeout %d\n", ipsetName, port, left)
		}
		if _, err := g.ipsetRun(ctx, lines, "-exist", "restore"); err != nil {
			return err
		}
	}
	for i := range g.fams {
		f := &g.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := g.installFam(i, f); err != nil {
			return err
		}
	}
	return nil
}

func clearChain(f *iptFam) error {
	exists, err := f.ipt.ChainExists(iptTable, iptChain)
	if err != nil || !exists {
		return err
	}
	if err := f.ipt.ClearChain(iptTable, iptChain); err != nil {
		return fmt.Errorf("%s: flush %s: %w", f.label, iptChain, err)
	}
	return nil
}

func (g *iptGate) installFam(i int, f *iptFam) error {
	st, err := g.inspectFam(f)
	if err != nil {
		return err
	}
	if !st.chain {
		if err := f.ipt.NewChain(iptTable, iptChain); err != nil {
			return fmt.Errorf("%s: create chain %s: %w", f.label, iptChain, err)
		}
	}
	if !st.rulesOK {
		if st.chain {
			if err := f.ipt.ClearChain(iptTable, iptChain); err != nil {
				return fmt.Errorf("%s: flush %s: %w", f.label, iptChain, err)
			}
		}
		for _, r := range iptRules(g.spec, f.v6) {
			if err := f.ipt.Append(iptTable, iptChain, r.spec...); err != nil {
				return fmt.Errorf("%s: add rule %s: %w", f.label, r.tag, err)
			}
		}
	}
	// Duplicated jumps (two daemons racing, a restore of a saved ruleset)
	// all go, and one comes back where it belongs.
	if len(st.jumps) > 1 {
		for range st.jumps {
			if err := f.ipt.Delete(iptTable, iptInput, iptJump...); err != nil {
				return fmt.Errorf("%s: delete duplicate jump to %s: %w", f.label, iptChain, err)
			}
		}
		st.jumps = nil
		lines, err := f.ipt.List(iptTable, iptInput)
		if err != nil {
			return fmt.Errorf("%s: list %s: %w", f.label, iptInput, err)
		}
		_, st.block = jumpPlace(lines)
	}
	if len(st.jumps) == 0 {
		// Right after core/firewall's jump when that is at the top: both
		// stay ahead of the admin's rules, and core/firewall keeps the
		// first place it checks for.
		if err := f.ipt.Insert(iptTable, iptInput, st.block+1, iptJump...); err != nil {
			return fmt.Errorf("%s: insert jump to %s: %w", f.label, iptChain, err)
		}
		g.warnedPos[i] = 0
		return nil
	}
	if pos := st.jumps[0]; pos > st.block && pos != g.warnedPos[i] {
		// Someone put rules above it; like core/firewall, do not fight
		// the tool that did (their rules decide first).
		g.log.Warn("jump to the rescue chain is not at the top of INPUT; rules above it can drop rescue traffic",
			"binary", f.label, "position", pos)
		g.warnedPos[i] = pos
	}
	return nil
}

func (g *iptGate) Refresh(ctx context.Context) error {
	var b strings.Builder
	seen := map[uint16]bool{}
	for _, p := range g.spec.Ports {
		if !seen[p.Num] {
			seen[p.Num] = true
			fmt.Fprintf(&b, "add %s %d timeout %d\n", ipsetName, p.Num, g.spec.seconds())
		}
	}
	if _, err := g.ipsetRun(ctx, b.String(), "-exist", "restore"); err != nil {
		return fmt.Errorf("failsafe: %s heartbeat: %w", g.name, err)
	}
	return nil
}

func (g *iptGate) Drop(ctx context.Context) error {
	var b strings.Builder
	for _, p := range g.spec.Ports {
		fmt.Fprintf(&b, "del %s %d\n", ipsetName, p.Num)
	}
	if _, err := g.ipsetRun(ctx, b.String(), "-exist", "restore"); err != nil {
		return fmt.Errorf("failsafe: %s drop heartbeat: %w", g.name, err)
	}
	return nil
}

func (g *iptGate) SetHold(ctx context.Context, on bool) error {
	line := fmt.Sprintf("del %s 0\n", ipsetName)
	if on {
		line = fmt.Sprintf("add %s 0 timeout 0\n", ipsetName)
	}
	if _, err := g.ipsetRun(ctx, line, "-exist", "restore"); err != nil {
		return fmt.Errorf("failsafe: %s hold %t: %w", g.name, on, err)
	}
	return nil
}

// Remove deletes the jumps, the chain and the set, in that order (the
// kernel keeps a set that rules use).
func (g *iptGate) Remove(ctx context.Context) error {
	var errs []error
	for i := range g.fams {
		f := &g.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeFam(f.ipt); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.label, err))
		}
	}
	if err := destroySet(ctx, g.ipset); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failsafe: %s remove: %w", g.name, err)
	}
	return nil
}

// removeFam deletes every jump to the rescue chain and the chain itself.
func removeFam(ipt *iptables.IPTables) error {
	for {
		err := ipt.Delete(iptTable, iptInput, iptJump...)
		if err == nil {
			continue
		}
		if !isNotExist(err) {
			return fmt.Errorf("delete jump to %s: %w", iptChain, err)
		}
		break
	}
	exists, err := ipt.ChainExists(iptTable, iptChain)
	if err != nil || !exists {
		return err
	}
	if err := ipt.ClearAndDeleteChain(iptTable, iptChain); err != nil {
		return fmt.Errorf("delete chain %s: %w", iptChain, err)
	}
	return nil
}

func destroySet(ctx context.Context, ipsetPath string) error {
	if _, err := runIpset(ctx, ipsetPath, "", "destroy", ipsetName); err != nil && !errors.Is(err, errSetMissing) {
		return err
	}
	return nil
}

func isNotExist(err error) bool {
	var e *iptables.Error
	if errors.As(err, &e) && e.IsNotExist() {
		return true
	}
	// `iptables -D` of a rule that is not there says "does a matching
	// rule exist in that chain?" with status 1, which IsNotExist misses
	// on some versions.
	return errors.As(err, &e) && e.ExitStatus() == 1 && strings.Contains(err.Error(), "does a matching rule exist")
}

func (g *iptGate) Held(ctx context.Context) (bool, error) {
	d, ok, err := g.dump(ctx)
	if err != nil || !ok {
		return false, err
	}
	held, _ := aliveFromDump(d, nil)
	return held, nil
}
