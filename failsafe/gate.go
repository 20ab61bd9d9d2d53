package failsafe

import (
	"context"
	"time"
)

// gate is the kernel side of a Switch in one firewall family: the rule
// that admits the rescue ports unless the heartbeat is present, the
// heartbeat elements and the hold marker. The Switch serialises calls.
type gate interface {
	Name() string
	// Install creates or repairs the rescue's objects for the gate's
	// spec, idempotently, adopting what a predecessor left. It keeps the
	// heartbeat and the hold marker when they are there.
	Install(ctx context.Context) error
	// Refresh sets every port's heartbeat element to expire After from now.
	Refresh(ctx context.Context) error
	// Drop removes the heartbeat elements: the rescue opens at once.
	Drop(ctx context.Context) error
	// SetHold adds or removes the hold marker.
	SetHold(ctx context.Context, on bool) error
	// State reads what is in the kernel.
	State(ctx context.Context) (kernelState, error)
	// Held reads only whether the hold marker is there (cheaper than
	// State, for the check after each refresh).
	Held(ctx context.Context) (bool, error)
	// Remove deletes the rescue's objects (and nothing of the grants
	// backend's); ones already gone are not an error.
	Remove(ctx context.Context) error
}

// kernelState is what a gate found in the kernel.
type kernelState struct {
	// Installed: every object the spec needs is present, as wanted.
	Installed bool
	// Problems say what is missing or different when !Installed.
	Problems []string
	// Held: the hold marker is present (an admin opened the rescue).
	Held bool
	// Left is the least time left among the ports' heartbeat elements;
	// 0 when any of them is missing.
	Left time.Duration
}

// isOpen reports whether the kernel admits new connections to the rescue
// ports: the rules are in place and the heartbeat is missing.
func (k kernelState) isOpen() bool { return k.Installed && k.Left <= 0 }
