package firewall

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// The iptables backend's view and its one-invocation changes; every
// method here is called with b.mu held.

// checkGenLocked marks the iptables-nft views stale when the nf_tables
// generation is not the one this backend's own commands left (someone
// else changed a table, or a command of ours failed); afterwards the
// generation read is the one expected. It is read before any listing, so
// a change that lands between the two makes the next check re-read again
// rather than be missed.
func (b *ipTablesBackend) checkGenLocked() {
	if !b.fams[0].nft && !b.fams[1].nft {
		return
	}
	g, err := b.gen()
	if err != nil || !b.genKnown || g != b.wantGen {
		for i := range b.fams {
			if b.fams[i].nft {
				b.fams[i].fresh = false
			}
		}
	}
	if err != nil {
		b.log.Debug("cannot read the nf_tables generation; re-reading Sesame's chain", "error", err)
		b.genKnown = false
		return
	}
	b.wantGen, b.genKnown = g, true
}

// committedLocked accounts for one invocation of f's binary: a success
// moved the nf_tables generation by one (iptables-nft commits each
// invocation as one transaction), a failure by an unknown amount.
func (b *ipTablesBackend) committedLocked(f *ipFamily, err error) {
	switch {
	case !f.nft:
	case err != nil:
		b.genKnown = false
	default:
		b.wantGen++
	}
}

// changeLocked makes f's rules what plan asks of the view: with one
// iptables invocation (or, for rules only appended to an iptables-nft
// chain, one netlink transaction) when the view is fresh; else, or when that fails,
// after re-reading the family (and, with repair, re-creating its chain and
// jump in the same invocation). recreated reports that repair.
func (b *ipTablesBackend) changeLocked(ctx context.Context, f *ipFamily, repair bool, plan func([]entry) ([]change, error)) (recreated bool, err error) {
	if f.fresh {
		p, err := plan(f.view)
		if err != nil {
			return false, err
		}
		cmds, view := planCommands(f.view, p, b.withTime)
		if rules, ok := b.netlinkAppendsLocked(f, p); ok {
			err = b.appendNetlinkLocked(f, rules)
		} else {
			err = b.runOnceLocked(ctx, f, cmds)
		}
		if err == nil {
			f.view = view
			b.timeWorks = b.timeWorks || (b.withTime && len(cmds) > 0)
			return false, nil
		}
		f.fresh = false
		if ctx.Err() != nil {
			return false, err
		}
		b.log.Debug("iptables command failed; re-reading Sesame's chain", "binary", f.label, "error", err)
		b.noTimeMatchLocked(f, err)
	}
	recreated, err = b.syncLocked(ctx, f, repair, plan)
	if b.noTimeMatchLocked(f, err) {
		recreated, err = b.syncLocked(ctx, f, repair, plan)
	}
	return recreated, err
}

// noTimeMatchLocked reports whether err says the kernel or iptables lacks
// the time match while rules still use it; then it says so once and
// carries on without it: Reconcile still removes expired rules, only the
// belt-and-braces stop is lost.
func (b *ipTablesBackend) noTimeMatchLocked(f *ipFamily, err error) bool {
	if err == nil || !b.withTime || !xtNoTimeMatch(err) {
		return false
	}
	b.log.Warn("iptables time match unavailable; expired rules now rely on reconcile alone", "binary", f.label, "error", err)
	b.withTime = false
	return true
}

// readLocked lists f's filter table (one `iptables -S`).
func (b *ipTablesBackend) readLocked(ctx context.Context, f *ipFamily) (chainState, error) {
	out, err := b.run(ctx, []string{f.bin, "-w", lockWaitArg, "-t", ipTable, "-S"}, nil)
	if err != nil {
		return chainState{}, fmt.Errorf("list %s: %w", ipTable, err)
	}
	return parseTable(string(out), func(line string, err error) {
		b.log.Warn("ignoring unreadable rule in Sesame's chain", "binary", f.label, "rule", line, "error", err)
	}), nil
}

// syncLocked re-reads f, then runs in one invocation what repairs its
// chain and jump (with repair) and what plan (nil: nothing) asks of the
// view just read. If that one transaction fails, someone changed the
// chain since the listing: the commands run one by one, adds before
// deletes, a delete of what is gone and a create of what exists being
// fine, and the view is re-read next time.
func (b *ipTablesBackend) syncLocked(ctx context.Context, f *ipFamily, repair bool, plan func([]entry) ([]change, error)) (recreated bool, err error) {
	f.fresh = false
	st, err := b.readLocked(ctx, f)
	if err != nil {
		return false, err
	}
	var cmds []xtCmd
	pos := 0
	if len(st.jumps) > 0 {
		pos = st.jumps[0]
	}
	if repair && (!st.baseOK() || len(st.jumps) > 1) {
		cmds, pos = baseRepair(st)
		recreated = true
	}
	view := st.entries
	if plan != nil {
		p, err := plan(view)
		if err != nil {
			return false, err
		}
		var more []xtCmd
		more, view = planCommands(view, p, b.withTime)
		cmds = append(cmds, more...)
	}
	err = b.runOnceLocked(ctx, f, cmds)
	exact := true
	switch {
	case err == nil:
	case len(cmds) == 1 && tolerable(cmds[0], err):
		err = nil
		exact = false
	case len(cmds) > 1 && ctx.Err() == nil && !xtNoTimeMatch(err):
		b.log.Debug("iptables-restore failed; running its commands one by one", "binary", f.label, "error", err)
		err = b.runEachLocked(ctx, f, cmds)
		exact = false
	}
	if err != nil {
		return false, err
	}
	f.view = view
	f.fresh = exact && (repair || st.baseOK())
	if pos != 1 && pos != 0 && pos != f.warnedPos {
		b.log.Warn("jump to Sesame's chain is not first in INPUT; rules above it can drop granted traffic",
			"binary", f.label, "position", pos)
	}
	f.warnedPos = pos
	return recreated, nil
}

// tolerable reports whether a failed command's end state is the wanted
// one anyway: a delete of what is gone, a create of what exists.
func tolerable(c xtCmd, err error) bool {
	switch c[0] {
	case "-D":
		return xtGone(err)
	case "-N":
		return xtExists(err)
	}
	return false
}

// runOnceLocked runs cmds as one invocation of f's binaries: the command
// itself when there is one, else one iptables-restore --noflush script,
// which the kernel applies entirely or not at all.
func (b *ipTablesBackend) runOnceLocked(ctx context.Context, f *ipFamily, cmds []xtCmd) error {
	var err error
	switch len(cmds) {
	case 0:
		return nil
	case 1:
		_, err = b.run(ctx, append([]string{f.bin, "-w", lockWaitArg, "-t", ipTable}, cmds[0]...), nil)
	default:
		var script []byte
		if script, err = restoreScript(cmds); err != nil {
			return err
		}
		_, err = b.run(ctx, []string{f.restore, "-w", lockWaitArg, "--noflush"}, script)
	}
	b.committedLocked(f, err)
	return err
}

// runEachLocked runs cmds one invocation each, in order, tolerating what
// tolerable allows.
func (b *ipTablesBackend) runEachLocked(ctx context.Context, f *ipFamily, cmds []xtCmd) error {
	for _, c := range cmds {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.runOnceLocked(ctx, f, []xtCmd{c}); err != nil && !tolerable(c, err) {
			return fmt.Errorf("%s: %w", strings.Join(c, " "), err)
		}
	}
	return nil
}

// ensureBaseLocked re-reads both families, repairs their chain and jump
// and refreshes their views. During Setup an IPv6 family that fails is
// disabled with a warning (no ip6tables, IPv6 off); afterwards any
// failure is an error.
func (b *ipTablesBackend) ensureBaseLocked(ctx context.Context, setup bool) (recreated bool, err error) {
	b.checkGenLocked()
	for i := range b.fams {
		f := &b.fams[i]
		if !f.usable() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return recreated, err
		}
		r, err := b.syncLocked(ctx, f, true, nil)
		recreated = recreated || r
		if err == nil {
			continue
		}
		if i == 0 {
			return recreated, fmt.Errorf("firewall: %s setup: %w", f.label, err)
		}
		if setup {
			b.log.Warn("IPv6 grants disabled", "backend", b.name, "error", err)
			f.bin, f.err = "", err
			continue
		}
		return recreated, fmt.Errorf("firewall: %s setup: %w", f.label, err)
	}
	return recreated, nil
}

// teardownLocked deletes f's jumps and chain in one restore.
func (b *ipTablesBackend) teardownLocked(ctx context.Context, f *ipFamily) error {
	f.view, f.fresh = nil, false
	st, err := b.readLocked(ctx, f)
	if err != nil {
		return err
	}
	var cmds []xtCmd
	for range st.jumps {
		cmds = append(cmds, xtCmd{"-D", ipInput, "-j", ipChain})
	}
	if st.chain {
		cmds = append(cmds, xtCmd{"-F", ipChain}, xtCmd{"-X", ipChain})
	}
	err = b.runOnceLocked(ctx, f, cmds)
	if err != nil && len(cmds) > 1 && ctx.Err() == nil {
		err = b.runEachLocked(ctx, f, cmds)
	}
	return err
}

// The rescue's chain is kept through go-iptables (rescue_iptables_linux.go).

func isNotExist(err error) bool {
	var e *iptables.Error
	if !errors.As(err, &e) {
		return false
	}
	// `iptables -D` of a rule that is not there says "does a matching rule
	// exist in that chain?" with status 1, which IsNotExist misses when
	// the message does not end exactly as it expects.
	return e.IsNotExist() || (e.ExitStatus() == 1 && strings.Contains(err.Error(), "does a matching rule exist"))
}

// removeChain deletes every jump from INPUT to chain, then chain with its
// rules; what is already gone is not an error. The rules of other chains
// are not touched.
func removeChain(ipt *iptables.IPTables, chain string) error {
	var errs []error
	for {
		err := ipt.Delete(ipTable, ipInput, "-j", chain)
		if err == nil {
			continue
		}
		if !isNotExist(err) {
			errs = append(errs, fmt.Errorf("delete jump to %s: %w", chain, err))
		}
		break
	}
	if err := ipt.ClearAndDeleteChain(ipTable, chain); err != nil {
		errs = append(errs, fmt.Errorf("delete chain %s: %w", chain, err))
	}
	return errors.Join(errs...)
}
