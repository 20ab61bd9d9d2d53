//go:build !linux

package failsafe

import (
	"context"
	"fmt"
	"runtime"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/firewall"
)

func newGate(kind firewall.Kind, _ spec, _ hclog.Logger) (gate, sweeper, error) {
	return nil, nil, fmt.Errorf("%w: %v needs Linux, not %s", ErrNoBackend, kind, runtime.GOOS)
}

func sweepAll(hclog.Logger) sweeper {
	return func(context.Context) ([]string, error) { return nil, nil }
}

func openInstalled(context.Context) ([]string, error) { return nil, nil }
