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
