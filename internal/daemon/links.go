package daemon

import (
	"context"
	"slices"

	"github.com/sesame-knock/sesame/internal/netmon"
)

// linkEvents is what the daemon asks of a link monitor (netmon.Monitor).
type linkEvents interface {
	Events() <-chan netmon.Event
	Close() error
}

// linksService keeps the capture filters and the matcher in step with the
// interfaces' addresses, and makes a capture waiting for its link retry
// at once when the link appears or comes up. It reads the addresses once
// at start; the engine runs by then, as what it is given goes through it.
func (d *daemon) linksService() hook {
	var lm linkEvents
	var w worker
	return hook{name: "links", start: func(ctx context.Context) error {
		var err error
		if lm, err = d.deps.newLinks(netmon.Options{Logger: d.log.Named("links")}); err != nil {
			d.log.Warn("network changes not followed", "error", err)
		} else {
			w.goRun(ctx, func(ctx context.Context) { d.followLinks(ctx, lm) })
		}
		d.refreshAddrs(ctx)
		return nil
	}, stop: func(context.Context) error {
		w.stop()
		if lm != nil {
			return lm.Close()
		}
		return nil
	}}
}

// followLinks keeps addresses and captures in step with lm's events.
func (d *daemon) followLinks(ctx context.Context, lm linkEvents) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-lm.Events():
			if !ok {
				return
			}
			d.log.Debug("link event", "change", ev.String())
			switch ev.Kind {
			case netmon.AddrAdded, netmon.AddrRemoved:
				d.refreshAddrs(ctx)
			case netmon.LinkCreated, netmon.LinkUp:
				d.caps.wake(ev.Ifname)
				d.refreshAddrs(ctx)
			}
		}
	}
}

func (d *daemon) refreshAddrs(ctx context.Context) {
	addrs := netmon.InterfaceAddrs(d.caps.ifaces)
	if d.caps.setLocal(addrs) {
		d.eng.SetLocal(ctx, addrs)
	}
	// Knocks from any of the host's addresses never count, whichever
	// interface they are on (see match.Matcher.SetHost).
	host := netmon.HostAddrs()
	d.spa.setLocal(host, addrs)
	d.mu.Lock()
	same := slices.Equal(host, d.host)
	d.host = host
	d.mu.Unlock()
	if !same {
		d.eng.SetHost(ctx, host)
	}
}
