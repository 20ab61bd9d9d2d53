package failsafe

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/firewall"
)

// newGate returns the gate for a resolved kind and the sweeper that
// clears the other families.
func newGate(kind firewall.Kind, s spec, log hclog.Logger) (gate, sweeper, error) {
	switch kind {
	case firewall.NFTables:
		return newNFTGate(s), sweepExcept(kind, log), nil
	case firewall.IPTables, firewall.IPTablesNFT, firewall.IPTablesLegacy:
		g, err := newIPTGate(kind, s, log.Named(kind.String()))
		if err != nil {
			return nil, nil, err
		}
		return g, sweepExcept(kind, log), nil
	}
	return nil, nil, fmt.Errorf("%w: no rescue for firewall kind %v", ErrNoBackend, kind)
}

func sweepAll(log hclog.Logger) sweeper { return sweepExcept(firewall.Auto, log) }

// sweepExcept removes rescue objects from every family but keep's (all
// of them for Auto): the nftables objects, and the rules of each iptables
// flavour that uses the ipset (there are none when the set is gone, since
// the kernel keeps a set that rules use).
func sweepExcept(keep firewall.Kind, log hclog.Logger) sweeper {
	return func(ctx context.Context) ([]string, error) {
		var removed []string
		var errs []error
		if keep != firewall.NFTables {
			did, err := sweepNFT(ctx)
			if err != nil {
				errs = append(errs, err)
			}
			if did {
				removed = append(removed, "nftables: rescue chains and sets in table inet sesame")
			}
		}
		r, err := sweepIPT(ctx, keep)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
		return removed, errors.Join(errs...)
	}
}

// sweepNFT removes the rescue's chains and sets from table inet sesame
// if there are any. A kernel without nf_tables has none.
func sweepNFT(ctx context.Context) (bool, error) {
	c, err := conn()
	if err != nil {
		return false, nil
	}
	g := newNFTGate(spec{})
	st, err := g.inspect(c)
	if err != nil {
		if _, lerr := c.ListTables(); lerr != nil {
			return false, nil // nf_tables unusable: nothing of ours there
		}
		return false, fmt.Errorf("failsafe: sweep nftables: %w", err)
	}
	if len(st.chains) == 0 && st.sets[nftPorts] == nil && st.sets[nftAlive] == nil {
		return false, nil
	}
	if err := g.Remove(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// flavour is "nft" or "legacy": which kernel tables an iptables binary
// drives.
func flavour(kind firewall.Kind) string {
	switch kind {
	case firewall.IPTablesNFT:
		return "nft"
	case firewall.IPTablesLegacy:
		return "legacy"
	case firewall.IPTables:
		out, err := exec.Command("iptables", "--version").Output()
		if err == nil && strings.Contains(string(out), "legacy") {
			return "legacy"
		}
		return "nft"
	}
	return ""
}

// sweepIPT removes the rescue's jumps and chains from the iptables
// flavours other than keep's, and the ipset unless keep uses it.
func sweepIPT(ctx context.Context, keep firewall.Kind) ([]string, error) {
	path, err := exec.LookPath("ipset")
	if err != nil {
		return nil, nil // no ipset, no ipset-based rescue
	}
	if _, err := runIpset(ctx, path, "", "list", "-n", ipsetName); err != nil {
		if errors.Is(err, errSetMissing) {
			return nil, nil
		}
		return nil, fmt.Errorf("failsafe: sweep iptables: %w", err)
	}
	keepFlavour := flavour(keep)
	var removed []string
	var errs []error
	for _, fl := range []string{"nft", "legacy"} {
		if fl == keepFlavour {
			continue
		}
		for i, bin := range []string{"iptables-" + fl, "ip6tables-" + fl} {
			if _, err := exec.LookPath(bin); err != nil {
				continue
			}
			proto := iptables.ProtocolIPv4
			if i == 1 {
				proto = iptables.ProtocolIPv6
			}
			ipt, err := iptables.New(iptables.Path(bin), iptables.IPFamily(proto), iptables.Timeout(lockWait))
			if err != nil {
				continue
			}
			exists, err := ipt.ChainExists(iptTable, iptChain)
			if err != nil || !exists {
				continue
			}
			if err := removeFam(ipt); err != nil {
				errs = append(errs, fmt.Errorf("failsafe: sweep %s: %w", bin, err))
				continue
			}
			removed = append(removed, bin+": chain "+iptChain+" and its jump")
		}
	}
	if keepFlavour == "" && len(errs) == 0 {
		if err := destroySet(ctx, path); err != nil {
			errs = append(errs, fmt.Errorf("failsafe: sweep: %w", err))
		} else {
			removed = append(removed, "ipset "+ipsetName)
		}
	}
	return removed, errors.Join(errs...)
}
