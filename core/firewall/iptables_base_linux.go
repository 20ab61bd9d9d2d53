package firewall

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// ensureBaseLocked makes both families' chain and jump whole; b.mu is
// held. During Setup an IPv6 family that fails is disabled with a warning
// (no ip6tables, IPv6 off); afterwards any failure is an error.
func (b *ipTablesBackend) ensureBaseLocked(ctx context.Context, setup bool) (recreated bool, err error) {
	for i := range b.fams {
		f := &b.fams[i]
		if f.ipt == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return recreated, err
		}
		r, err := b.ensureFamily(f)
		recreated = recreated || r
		if err == nil {
			continue
		}
		if i == 0 {
			return recreated, fmt.Errorf("firewall: %s setup: %w", f.label, err)
		}
		if setup {
			b.log.Warn("IPv6 grants disabled", "backend", b.name, "error", err)
			f.ipt, f.err = nil, err
			continue
		}
		return recreated, fmt.Errorf("firewall: %s setup: %w", f.label, err)
	}
	return recreated, nil
}

// ensureFamily makes sure the chain exists and INPUT jumps to it exactly
// once. A missing jump goes in at position 1. Extra jumps are deleted from
// the top (iptables -D removes the first match), which never leaves the
// chain without one. A single jump that someone has since pushed below
// position 1 is left where it is, with a warning: rules above it decide
// first, and Sesame does not fight the tool that put them there.
func (b *ipTablesBackend) ensureFamily(f *ipFamily) (recreated bool, err error) {
	exists, err := f.ipt.ChainExists(ipTable, ipChain)
	if err != nil {
		return false, fmt.Errorf("check chain %s: %w", ipChain, err)
	}
	if !exists {
		if err := f.ipt.NewChain(ipTable, ipChain); err != nil && !isExists(err) {
			return false, fmt.Errorf("create chain %s: %w", ipChain, err)
		}
		recreated = true
	}
	lines, err := f.ipt.List(ipTable, ipInput)
	if err != nil {
		return recreated, fmt.Errorf("list %s: %w", ipInput, err)
	}
	positions, _ := jumpPlace(lines, ipChain)
	var pos int
	switch {
	case len(positions) == 0:
		if err := f.ipt.Insert(ipTable, ipInput, 1, ipJump...); err != nil {
			return recreated, fmt.Errorf("insert jump to %s: %w", ipChain, err)
		}
		f.warnedPos = 1
		return true, nil
	case len(positions) > 1:
		for range positions[1:] {
			if err := f.ipt.Delete(ipTable, ipInput, ipJump...); err != nil {
				return recreated, fmt.Errorf("delete duplicate jump to %s: %w", ipChain, err)
			}
		}
		recreated = true
		pos = positions[len(positions)-1] - (len(positions) - 1)
	default:
		pos = positions[0]
	}
	if pos != 1 && pos != f.warnedPos {
		b.log.Warn("jump to Sesame's chain is not first in INPUT; rules above it can drop granted traffic",
			"binary", f.label, "position", pos)
	}
	f.warnedPos = pos
	return recreated, nil
}

func isExists(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.ExitStatus() == 1 && strings.Contains(err.Error(), "exists")
}

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
