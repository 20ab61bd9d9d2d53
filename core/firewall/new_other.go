//go:build !linux

package firewall

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/hashicorp/go-hclog"
)

var errNotLinux = errors.New("native firewall backends need Linux, not " + runtime.GOOS)

// New fails: iptables and nftables exist only on Linux.
func New(kind Kind, _ hclog.Logger) (Backend, error) {
	return nil, fmt.Errorf("firewall: %v: %w", kind, errNotLinux)
}

// Detect fails: iptables and nftables exist only on Linux.
func Detect(context.Context) (Kind, string, error) {
	return Auto, "", fmt.Errorf("firewall.Detect: %w", errNotLinux)
}

func newRescueFamily(kind Kind, _ rescueSpec, _ hclog.Logger) (rescueFamily, error) {
	return nil, fmt.Errorf("%w: %v: %w", ErrNoRescue, kind, errNotLinux)
}

// removeRescues has nothing to remove: there is no rescue off Linux.
func removeRescues(context.Context, Kind) ([]string, error) { return nil, nil }

// OpenRescues has nothing to open: there is no rescue off Linux.
func OpenRescues(context.Context) ([]string, error) { return nil, nil }
