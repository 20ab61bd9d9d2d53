package firewall

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// newRescueFamily returns the rescue of a resolved kind.
func newRescueFamily(kind Kind, s rescueSpec, log hclog.Logger) (rescueFamily, error) {
	switch kind {
	case NFTables:
		return newNFTRescue(s), nil
	case IPTables, IPTablesNFT, IPTablesLegacy:
		return newIPRescue(kind, s, log.Named(kind.String()))
	}
	return nil, fmt.Errorf("%w: no rescue for firewall kind %v", ErrNoRescue, kind)
}

// removeRescues removes the rescue objects of every family but keep's
// (all of them for Auto): the nftables objects, and the chains of each
// iptables flavour that uses the ipset, then the ipset when no kept
// flavour uses it (the kernel keeps a set that rules use).
func removeRescues(ctx context.Context, keep Kind) ([]string, error) {
	var removed []string
	var errs []error
	if keep != NFTables {
		if st, ok, err := nftFindRescue(dialNetlink); err != nil {
			errs = append(errs, fmt.Errorf("nftables: %w", err))
		} else if ok && st.found() {
			if err := (&nftRescue{dial: dialNetlink}).remove(ctx); err != nil {
				errs = append(errs, fmt.Errorf("nftables: %w", err))
			} else {
				removed = append(removed, "nftables: rescue chains and sets in table inet sesame")
			}
		}
	}
	r, err := removeIPRescues(ctx, keep)
	removed = append(removed, r...)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("firewall: remove rescues: %w", err)
	}
	return removed, nil
}

// flavour is "nft" or "legacy": which kernel tables an iptables kind
// drives; "" for the others.
func flavour(kind Kind) string {
	switch kind {
	case IPTablesNFT:
		return "nft"
	case IPTablesLegacy:
		return "legacy"
	case IPTables:
		out, err := exec.Command(ipBinaries[IPTables][0], "--version").Output()
		if err == nil && strings.Contains(string(out), "legacy") {
			return "legacy"
		}
		return "nft"
	}
	return ""
}

// removeIPRescues removes the rescue's jumps and chains from the iptables
// flavours other than keep's, and the ipset unless keep uses it.
func removeIPRescues(ctx context.Context, keep Kind) ([]string, error) {
	path, err := exec.LookPath("ipset")
	if err != nil {
		return nil, nil // no ipset, no ipset-based rescue
	}
	if _, err := runIpset(ctx, path, "", "list", "-n", ipsetName); err != nil {
		if errors.Is(err, errSetMissing) {
			return nil, nil
		}
		return nil, err
	}
	keepFlavour := flavour(keep)
	var removed []string
	var errs []error
	for _, k := range []Kind{IPTablesNFT, IPTablesLegacy} {
		if flavour(k) == keepFlavour {
			continue
		}
		ipts, _ := ipTablesFor(k)
		for i, ipt := range ipts {
			if ipt == nil {
				continue // that binary is not installed
			}
			bin := ipBinaries[k][i]
			if exists, err := ipt.ChainExists(ipTable, ipRescueChain); err != nil || !exists {
				continue
			}
			if err := removeChain(ipt, ipRescueChain); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", bin, err))
				continue
			}
			removed = append(removed, bin+": chain "+ipRescueChain+" and its jump")
		}
	}
	if keepFlavour == "" && len(errs) == 0 {
		if err := destroyIpset(ctx, path); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "ipset "+ipsetName)
		}
	}
	return removed, errors.Join(errs...)
}

// OpenRescues holds open every rescue installed in the kernel, in any
// family, with the ports the kernel holds: what `sesame rescue open` does
// when it cannot read the config. It returns a description of each it
// opened; nothing installed is not an error.
func OpenRescues(ctx context.Context) ([]string, error) {
	var opened []string
	var errs []error
	if st, ok, err := nftFindRescue(dialNetlink); err != nil {
		errs = append(errs, fmt.Errorf("nftables: %w", err))
	} else if ok && st.view.sets[nftRescuePorts] != nil {
		r := &nftRescue{spec: rescueSpec{ports: st.ports}, dial: dialNetlink}
		if err := r.open(ctx); err != nil {
			errs = append(errs, fmt.Errorf("nftables: %w", err))
		} else {
			opened = append(opened, "nftables: "+knock.FormatSequence(st.ports))
		}
	}
	if path, err := exec.LookPath("ipset"); err == nil {
		d, ok, err := dumpIpset(ctx, path)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			r := &ipRescue{ipset: path}
			for port := range d.Elements {
				if port != 0 {
					r.spec.ports = append(r.spec.ports, knock.Port{Num: port, Proto: knock.TCP})
				}
			}
			slices.SortFunc(r.spec.ports, comparePorts)
			if err := r.open(ctx); err != nil {
				errs = append(errs, err)
			} else {
				opened = append(opened, "iptables (ipset "+ipsetName+")")
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return opened, fmt.Errorf("firewall.OpenRescues: %w", err)
	}
	return opened, nil
}
