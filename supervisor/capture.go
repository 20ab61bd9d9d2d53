package supervisor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/core/knock"
)

// captures runs one capture handle per interface, reopening a handle
// whose interface went down, vanished or never existed yet, and keeps
// every handle's filter in step with the doors and local addresses.
type captures struct {
	ifaces []string
	log    hclog.Logger
	eng    *engine.Engine

	mu      sync.Mutex // guards the fields below
	ports   []knock.Port
	targets []netip.Addr
	local   []netip.Addr
	handles map[string]*capture.Handle
	state   map[string]string // iface -> "up" or why not
}

func newCaptures(ifaces []string, log hclog.Logger) *captures {
	return &captures{ifaces: ifaces, log: log, handles: map[string]*capture.Handle{}, state: map[string]string{}}
}

func (c *captures) specLocked() capture.FilterSpec {
	dsts := append(slices.Clone(c.local), c.targets...)
	return capture.FilterSpec{Dsts: dsts, Ports: slices.Clone(c.ports)}
}

// setDoorFilter is the engine's OnFilter callback.
func (c *captures) setDoorFilter(ports []knock.Port, targets []netip.Addr) {
	c.mu.Lock()
	c.ports, c.targets = ports, targets
	c.mu.Unlock()
	c.apply()
}

// setLocal records the interfaces' addresses and reports whether they
// changed.
func (c *captures) setLocal(addrs []netip.Addr) bool {
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	c.mu.Lock()
	same := slices.Equal(addrs, c.local)
	c.local = addrs
	c.mu.Unlock()
	if !same {
		c.apply()
	}
	return !same
}

func (c *captures) apply() {
	c.mu.Lock()
	spec := c.specLocked()
	hs := make([]*capture.Handle, 0, len(c.handles))
	for _, h := range c.handles {
		hs = append(hs, h)
	}
	c.mu.Unlock()
	for _, h := range hs {
		if err := h.SetFilter(spec); err != nil {
			c.log.Error("updating capture filter", "error", err)
		}
	}
}

// start opens every interface once (so READY can follow) and keeps a
// goroutine per interface that reopens it when needed. It returns how
// many interfaces are attached.
func (c *captures) start(ctx context.Context, wg *sync.WaitGroup) int {
	attached := 0
	for _, iface := range c.ifaces {
		h, err := c.open(iface)
		if err == nil {
			attached++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(ctx, iface, h)
		}()
	}
	return attached
}

func (c *captures) open(iface string) (*capture.Handle, error) {
	c.mu.Lock()
	spec := c.specLocked()
	c.mu.Unlock()
	h, err := capture.Open(iface, spec)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.state[iface] = "down: " + err.Error()
		return nil, err
	}
	c.handles[iface] = h
	c.state[iface] = "up"
	return h, nil
}

// loop runs the handle on iface and reopens it with backoff when it
// ends with an error (the link went down or the interface was deleted).
func (c *captures) loop(ctx context.Context, iface string, h *capture.Handle) {
	backoff := 100 * time.Millisecond
	logged := ""
	for ctx.Err() == nil {
		if h == nil {
			var err error
			if h, err = c.open(iface); err != nil {
				if err.Error() != logged {
					c.log.Error("cannot capture on "+iface+", retrying", "interface", iface, "error", err)
					logged = err.Error()
				}
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			if logged != "" {
				c.log.Info("capturing on "+iface+" again", "interface", iface)
			}
		}
		backoff, logged = 100*time.Millisecond, ""
		err := h.Run(ctx, c.eng.Submit, nil)
		c.mu.Lock()
		if c.handles[iface] == h {
			delete(c.handles, iface)
		}
		if err != nil {
			c.state[iface] = "down: " + err.Error()
		}
		c.mu.Unlock()
		h.Close()
		h = nil
		if err != nil && ctx.Err() == nil {
			c.log.Warn(fmt.Sprintf("capture on %s ended: %v; reopening", iface, err), "interface", iface)
		}
	}
}

func (c *captures) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.handles {
		h.Close()
	}
}

func (c *captures) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, i := range c.ifaces {
		st := c.state[i]
		if st != "up" {
			st = "down"
		}
		parts = append(parts, i+" ("+st+")")
	}
	return strings.Join(parts, ", ")
}
