package firewall

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
)

// ipRescue keeps the rescue in one iptables flavour (both families) with
// its heartbeat in an ipset. iptables and ipset are programs: they run in
// the network namespace of the calling thread and take no context (ctx is
// checked between commands; iptables waits at most lockWait seconds for
// the xtables lock).
type ipRescue struct {
	kind  Kind
	spec  rescueSpec
	fams  [2]ipRescueFamily // IPv4, IPv6
	ipset string            // path of the ipset binary
	log   hclog.Logger
}

type ipRescueFamily struct {
	label string
	ipt   *iptables.IPTables // nil when the family is unusable
	v6    bool
	// warnedPos is the jump position last warned about, so a jump someone
	// pushed down is reported once, not every heartbeat.
	warnedPos int
}

func newIPRescue(kind Kind, s rescueSpec, log hclog.Logger) (*ipRescue, error) {
	ipsetPath, err := exec.LookPath("ipset")
	if err != nil {
		return nil, fmt.Errorf("%w: ipset not installed (apt-get install ipset): %v", ErrNoRescue, err)
	}
	r := &ipRescue{kind: kind, spec: s, ipset: ipsetPath, log: log}
	ipts, errs := ipTablesFor(kind)
	if errs[0] != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRescue, errs[0])
	}
	if errs[1] != nil {
		log.Warn("IPv6 rescue disabled", "error", errs[1])
	}
	for i := range r.fams {
		r.fams[i] = ipRescueFamily{label: ipBinaries[kind][i], ipt: ipts[i], v6: i == 1}
	}
	return r, nil
}

func (r *ipRescue) name() string { return r.kind.String() }

var errSetMissing = errors.New("set does not exist")

// runIpset runs the ipset binary at path with args and stdin;
// errSetMissing wraps "does not exist".
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

// restore applies ipset commands, one a line, ignoring elements already
// there or already gone.
func restore(ctx context.Context, path, lines string) error {
	_, err := runIpset(ctx, path, lines, "-exist", "restore")
	return err
}

// dumpIpset reads the set; ok is false when it does not exist.
func dumpIpset(ctx context.Context, path string) (d ipsetDump, ok bool, err error) {
	out, err := runIpset(ctx, path, "", "save", ipsetName)
	if errors.Is(err, errSetMissing) {
		return d, false, nil
	}
	if err != nil {
		return d, false, err
	}
	d, err = parseIpsetSave(out, ipsetName)
	return d, err == nil, err
}

func destroyIpset(ctx context.Context, path string) error {
	if _, err := runIpset(ctx, path, "", "destroy", ipsetName); err != nil && !errors.Is(err, errSetMissing) {
		return err
	}
	return nil
}

// ipRescueFamilyState is one family's chain and jump as found.
type ipRescueFamilyState struct {
	chain    bool
	rulesOK  bool
	jumps    []int // positions of the rescue's jumps in INPUT
	block    int   // length of the block of Sesame's jumps at the top
	problems []string
}

func (r *ipRescue) inspectFamily(f *ipRescueFamily) (ipRescueFamilyState, error) {
	var st ipRescueFamilyState
	exists, err := f.ipt.ChainExists(ipTable, ipRescueChain)
	if err != nil {
		return st, fmt.Errorf("%s: check chain %s: %w", f.label, ipRescueChain, err)
	}
	st.chain = exists
	if !exists {
		st.problems = append(st.problems, f.label+": chain "+ipRescueChain+" missing")
	} else {
		lines, err := f.ipt.List(ipTable, ipRescueChain)
		if err != nil {
			return st, fmt.Errorf("%s: list %s: %w", f.label, ipRescueChain, err)
		}
		tags, err := ipRescueTags(lines)
		if err != nil {
			return st, fmt.Errorf("%s: %w", f.label, err)
		}
		var want []string
		for _, rl := range ipRescueRules(r.spec, f.v6) {
			want = append(want, rl.tag)
		}
		if st.rulesOK = slices.Equal(tags, want); !st.rulesOK {
			st.problems = append(st.problems, f.label+": chain "+ipRescueChain+" has other rules")
		}
	}
	lines, err := f.ipt.List(ipTable, ipInput)
	if err != nil {
		return st, fmt.Errorf("%s: list %s: %w", f.label, ipInput, err)
	}
	st.jumps, st.block = jumpPlace(lines, ipRescueChain)
	switch len(st.jumps) {
	case 0:
		st.problems = append(st.problems, f.label+": no jump from INPUT to "+ipRescueChain)
	case 1:
	default:
		st.problems = append(st.problems, f.label+": "+strconv.Itoa(len(st.jumps))+" jumps to "+ipRescueChain)
	}
	return st, nil
}

func (r *ipRescue) state(ctx context.Context) (rescueState, error) {
	var st rescueState
	d, ok, err := dumpIpset(ctx, r.ipset)
	if err != nil {
		return st, err
	}
	if !ok {
		st.problems = append(st.problems, "ipset "+ipsetName+" missing")
	} else {
		if !d.Header.fits(r.spec) {
			st.problems = append(st.problems, fmt.Sprintf("ipset %s is %s range %d-%d, want bitmap:port range 0-%d with timeouts",
				ipsetName, d.Header.Type, d.Header.From, d.Header.To, r.spec.maxPort()))
		}
		st.held, st.left = aliveFromDump(d, r.spec.ports)
	}
	for i := range r.fams {
		f := &r.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		fs, err := r.inspectFamily(f)
		if err != nil {
			return st, err
		}
		st.problems = append(st.problems, fs.problems...)
	}
	return st, nil
}

// install creates the set, the chains, their rules and the jumps, or
// repairs them. A set that cannot carry the spec (a port above its range)
// is replaced with its heartbeat and hold marker copied over; the rules
// that use it are taken out first, since the kernel will not destroy a
// set in use.
func (r *ipRescue) install(ctx context.Context) error {
	d, ok, err := dumpIpset(ctx, r.ipset)
	if err != nil {
		return err
	}
	if ok && !d.Header.fits(r.spec) {
		for i := range r.fams {
			if f := &r.fams[i]; f.ipt != nil {
				if err := clearRescueChain(f); err != nil {
					return err
				}
			}
		}
		if _, err := runIpset(ctx, r.ipset, "", "destroy", ipsetName); err != nil {
			return fmt.Errorf("%w (another iptables flavour may still use it: sesame rescue remove)", err)
		}
		ok = false
	}
	if !ok {
		top := int(r.spec.maxPort())
		lines := fmt.Sprintf("create %s bitmap:port range 0-%d timeout %d\n", ipsetName, top, r.spec.seconds())
		if len(d.Elements) == 0 {
			// A new set is born holding the heartbeat, before the rules
			// that read it exist: a fresh rescue is never open.
			for _, p := range r.spec.ports {
				lines += fmt.Sprintf("add %s %d timeout %d\n", ipsetName, p.Num, r.spec.seconds())
			}
		}
		for port, left := range d.Elements {
			if int(port) > top {
				continue
			}
			lines += fmt.Sprintf("add %s %d timeout %d\n", ipsetName, port, max(left, 0))
		}
		if err := restore(ctx, r.ipset, lines); err != nil {
			return err
		}
	}
	for i := range r.fams {
		f := &r.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.installFamily(f); err != nil {
			return err
		}
	}
	return nil
}

func clearRescueChain(f *ipRescueFamily) error {
	exists, err := f.ipt.ChainExists(ipTable, ipRescueChain)
	if err != nil || !exists {
		return err
	}
	if err := f.ipt.ClearChain(ipTable, ipRescueChain); err != nil {
		return fmt.Errorf("%s: flush %s: %w", f.label, ipRescueChain, err)
	}
	return nil
}

func (r *ipRescue) installFamily(f *ipRescueFamily) error {
	st, err := r.inspectFamily(f)
	if err != nil {
		return err
	}
	if !st.chain {
		if err := f.ipt.NewChain(ipTable, ipRescueChain); err != nil {
			return fmt.Errorf("%s: create chain %s: %w", f.label, ipRescueChain, err)
		}
	}
	if !st.rulesOK {
		if st.chain {
			if err := f.ipt.ClearChain(ipTable, ipRescueChain); err != nil {
				return fmt.Errorf("%s: flush %s: %w", f.label, ipRescueChain, err)
			}
		}
		for _, rl := range ipRescueRules(r.spec, f.v6) {
			if err := f.ipt.Append(ipTable, ipRescueChain, rl.spec...); err != nil {
				return fmt.Errorf("%s: add rule %s: %w", f.label, rl.tag, err)
			}
		}
	}
	jump := []string{"-j", ipRescueChain}
	// Duplicated jumps (two daemons racing, a restore of a saved ruleset)
	// all go, and one comes back where it belongs.
	if len(st.jumps) > 1 {
		for range st.jumps {
			if err := f.ipt.Delete(ipTable, ipInput, jump...); err != nil {
				return fmt.Errorf("%s: delete duplicate jump to %s: %w", f.label, ipRescueChain, err)
			}
		}
		st.jumps = nil
		lines, err := f.ipt.List(ipTable, ipInput)
		if err != nil {
			return fmt.Errorf("%s: list %s: %w", f.label, ipInput, err)
		}
		_, st.block = jumpPlace(lines, ipRescueChain)
	}
	if len(st.jumps) == 0 {
		// Right after the grants' jump when that is at the top: both stay
		// ahead of the admin's rules, and the grants backend keeps the
		// first place it checks for.
		if err := f.ipt.Insert(ipTable, ipInput, st.block+1, jump...); err != nil {
			return fmt.Errorf("%s: insert jump to %s: %w", f.label, ipRescueChain, err)
		}
		f.warnedPos = 0
		return nil
	}
	if pos := st.jumps[0]; pos > st.block && pos != f.warnedPos {
		// Someone put rules above it; like the grants backend, do not
		// fight the tool that did (their rules decide first).
		r.log.Warn("jump to the rescue chain is not at the top of INPUT; rules above it can drop rescue traffic",
			"binary", f.label, "position", pos)
		f.warnedPos = pos
	}
	return nil
}

// heartbeatLines are the ipset commands that set every port's heartbeat.
func (r *ipRescue) heartbeatLines() string {
	var b strings.Builder
	seen := map[uint16]bool{}
	for _, p := range r.spec.ports {
		if !seen[p.Num] {
			seen[p.Num] = true
			fmt.Fprintf(&b, "add %s %d timeout %d\n", ipsetName, p.Num, r.spec.seconds())
		}
	}
	return b.String()
}

func (r *ipRescue) refresh(ctx context.Context) error {
	return restore(ctx, r.ipset, r.heartbeatLines())
}

// open adds the hold marker and drops the heartbeats in one restore.
func (r *ipRescue) open(ctx context.Context) error {
	return restore(ctx, r.ipset, r.openLines())
}

func (r *ipRescue) openLines() string {
	var b strings.Builder
	fmt.Fprintf(&b, "add %s 0 timeout 0\n", ipsetName)
	for _, p := range r.spec.ports {
		fmt.Fprintf(&b, "del %s %d\n", ipsetName, p.Num)
	}
	return b.String()
}

// close removes the hold marker and refreshes the heartbeats in one restore.
func (r *ipRescue) close(ctx context.Context) error {
	return restore(ctx, r.ipset, fmt.Sprintf("del %s 0\n", ipsetName)+r.heartbeatLines())
}

// remove deletes the jumps, the chain and the set, in that order (the
// kernel keeps a set that rules use).
func (r *ipRescue) remove(ctx context.Context) error {
	var errs []error
	for i := range r.fams {
		f := &r.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeChain(f.ipt, ipRescueChain); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.label, err))
		}
	}
	if err := destroyIpset(ctx, r.ipset); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *ipRescue) held(ctx context.Context) (bool, error) {
	d, ok, err := dumpIpset(ctx, r.ipset)
	if err != nil || !ok {
		return false, err
	}
	held, _ := aliveFromDump(d, nil)
	return held, nil
}
