//go:build !linux

package netmon

import "errors"

func newNetlinkMon(Options, <-chan struct{}) (osMon, error) {
	return nil, errors.New("netlink notifications are Linux's")
}

// DefaultRouteInterfaces names the interfaces that carry a default route;
// none where routes cannot be read.
func DefaultRouteInterfaces() []string { return nil }
