package daemon

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/control"
)

// controlService is the admin socket: taken first (listener), answered
// once the daemon runs (server). The daemon is its control.Handler.
type controlService struct {
	d  *daemon
	ln net.Listener // set by the listener's start
	w  worker
}

func (c *controlService) listener() hook {
	return hook{name: "control socket", start: func(context.Context) (err error) {
		c.ln, err = c.d.deps.listen(c.d.opts.Socket)
		return err
	}, stop: func(context.Context) error {
		// The server's shutdown closed it already, unless it never ran.
		if err := c.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}}
}

func (c *controlService) server() hook {
	return hook{name: "control", start: func(ctx context.Context) error {
		c.w.goRun(ctx, func(ctx context.Context) {
			if err := control.Serve(ctx, c.ln, c.d); err != nil {
				c.d.log.Error("control socket: "+err.Error(), "error", err)
			}
		})
		return nil
	}, stop: func(context.Context) error { c.w.stop(); return nil }}
}

// Grants, Revoke, Forget and Status (status.go) answer the control socket.
func (d *daemon) Grants() []grant.Grant             { return d.grants.List() }
func (d *daemon) Revoke(t string) ([]string, error) { return d.fleet.revoke(t) }

// FleetGrants answers `sesame grants --fleet` (fleet.go).
func (d *daemon) FleetGrants(ctx context.Context) (control.FleetList, error) {
	return d.fleet.FleetGrants(ctx)
}
func (d *daemon) Forget(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.grants.Forget(ctx, id)
}
