package failsafe

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"

	"github.com/google/nftables"

	"github.com/sesame-knock/sesame/core/knock"
)

// openInstalled holds open every rescue installed in any family, reading
// the ports from the kernel, and returns a description of each.
func openInstalled(ctx context.Context) ([]string, error) {
	var opened []string
	var errs []error
	if ports, ok, err := nftInstalledPorts(); err != nil {
		errs = append(errs, err)
	} else if ok {
		g := newNFTGate(spec{Ports: ports})
		if err := holdOpen(ctx, g); err != nil {
			errs = append(errs, err)
		} else {
			opened = append(opened, "nftables: "+knock.FormatSequence(ports))
		}
	}
	if path, err := exec.LookPath("ipset"); err == nil {
		g := &iptGate{name: "ipset", ipset: path}
		d, ok, err := g.dump(ctx)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			for port := range d.Elements {
				if port != 0 {
					g.spec.Ports = append(g.spec.Ports, knock.Port{Num: port, Proto: knock.TCP})
				}
			}
			slices.SortFunc(g.spec.Ports, comparePorts)
			if err := holdOpen(ctx, g); err != nil {
				errs = append(errs, err)
			} else {
				opened = append(opened, "iptables (ipset "+ipsetName+")")
			}
		}
	}
	return opened, errors.Join(errs...)
}

func holdOpen(ctx context.Context, g gate) error {
	if err := g.SetHold(ctx, true); err != nil {
		return err
	}
	return g.Drop(ctx)
}

// nftInstalledPorts reads set rescue_ports; ok is false when there is no
// rescue in nftables (or no nf_tables at all).
func nftInstalledPorts() (ports []knock.Port, ok bool, err error) {
	c, err := conn()
	if err != nil {
		return nil, false, nil
	}
	s, err := c.GetSetByName(sesameTable, nftPorts)
	if err != nil || s == nil {
		return nil, false, nil
	}
	els, err := c.GetSetElements(&nftables.Set{Table: sesameTable, Name: nftPorts})
	if err != nil {
		return nil, false, fmt.Errorf("failsafe: list %s: %w", nftPorts, err)
	}
	for _, el := range els {
		if p, ok := parseProtoPortKey(el.Key); ok {
			ports = append(ports, p)
		}
	}
	slices.SortFunc(ports, comparePorts)
	return ports, true, nil
}
