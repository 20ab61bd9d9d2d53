package firewall

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// New returns the backend of the given kind. Auto runs Detect first and
// logs what it found; iptables kinds fail if their iptables binary is
// missing. A nil log discards.
func New(kind Kind, log hclog.Logger) (Backend, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if kind == Auto {
		ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
		defer cancel()
		k, detail, err := Detect(ctx)
		if err != nil {
			return nil, err
		}
		log.Info("firewall backend detected", "backend", k.String(), "detail", detail)
		kind = k
	}
	switch kind {
	case IPTables, IPTablesNFT, IPTablesLegacy:
		return newIPTables(kind, log.Named(kind.String()))
	case NFTables:
		return newNFTables(log.Named(kind.String())), nil
	}
	return nil, fmt.Errorf("firewall: no backend for kind %v", kind)
}
