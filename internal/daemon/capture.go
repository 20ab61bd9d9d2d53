package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/metrics"
	"github.com/sesame-knock/sesame/supervisor"
)

// handle is what a capture loop asks of an open capture (capture.Handle).
type handle interface {
	RunDeliver(ctx context.Context, d capture.Deliver, heartbeat func()) error
	SetFilter(spec capture.FilterSpec) error
	Stats() capture.Stats
	Close() error
}

// packetSink takes captured packets (the engine).
type packetSink interface{ Submit(knock.Packet) }

// captures owns one capture handle per interface: the supervised
// "capture IFACE" components run them, reopening a handle whose interface
// went down, vanished or does not exist yet, and every handle's filter is
// kept in step with the doors and the interfaces' addresses.
type captures struct {
	ifaces     []string
	log        hclog.Logger
	eng        packetSink
	openHandle func(iface string, spec capture.FilterSpec) (handle, error) // capture.Open

	mu      sync.Mutex // guards the fields below
	ports   []knock.Port
	targets []netip.Addr
	// dgramPort is SPA_Port (0: SPA off), whose datagrams go to datagram.
	dgramPort uint16
	datagram  func(knock.Packet, []byte)
	local     []netip.Addr
	handles   map[string]handle
	state     map[string]string        // iface -> "up" or why not
	wakeups   map[string]chan struct{} // a link came up: retry now
	// noFilter holds, per interface, why the kernel refused every filter
	// (capture.ErrFilterAttach): the capture then misses knocks or never
	// starts, and the daemon is unhealthy until a filter attaches.
	noFilter map[string]error
	// filters holds, per interface, the kernel filter last logged.
	filters map[string]filterState
	// closed holds, per interface, the counts of its handles that have
	// ended; shown keeps the counts last shown, so that they never go
	// back (a handle's counts move to closed as it ends).
	closed map[string]metrics.Interface
	shown  map[string]metrics.Interface
}

// filterState is what is logged about a capture's kernel filter.
type filterState struct {
	kind  capture.FilterKind
	exact bool
}

func newCaptures(ifaces []string, log hclog.Logger) *captures {
	c := &captures{ifaces: ifaces, log: log, handles: map[string]handle{},
		state: map[string]string{}, wakeups: map[string]chan struct{}{}, noFilter: map[string]error{},
		filters: map[string]filterState{}, closed: map[string]metrics.Interface{}, shown: map[string]metrics.Interface{}}
	for _, i := range ifaces {
		c.wakeups[i] = make(chan struct{}, 1)
	}
	return c
}

func (c *captures) specLocked() capture.FilterSpec {
	dsts := append(slices.Clone(c.local), c.targets...)
	spec := capture.FilterSpec{Dsts: dsts, Ports: slices.Clone(c.ports)}
	if c.dgramPort != 0 {
		spec.Datagrams = []uint16{c.dgramPort}
	}
	return spec
}

// setDatagrams sends the datagrams to port (0: none) to sink, and
// updates the filters when the port changed.
func (c *captures) setDatagrams(port uint16, sink func(knock.Packet, []byte)) {
	c.mu.Lock()
	changed := c.dgramPort != port
	c.dgramPort, c.datagram = port, sink
	c.mu.Unlock()
	if changed {
		c.apply()
	}
}

// deliver is what a capture hands its packets to.
func (c *captures) deliver() capture.Deliver {
	c.mu.Lock()
	defer c.mu.Unlock()
	return capture.Deliver{Knock: c.eng.Submit, Datagram: c.datagram}
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
	hs := make(map[string]handle, len(c.handles))
	for i, h := range c.handles {
		hs[i] = h
	}
	c.mu.Unlock()
	for iface, h := range hs {
		err := h.SetFilter(spec)
		if errors.Is(err, net.ErrClosed) {
			continue // being reopened, with the new spec
		}
		if err != nil {
			c.log.Error("updating capture filter: "+err.Error(), "interface", iface, "error", err)
		} else {
			c.logFilter(iface, h.Stats(), false)
		}
		c.noteFilter(iface, err)
	}
}

// noteFilter records whether iface's filter could be attached.
func (c *captures) noteFilter(iface string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, capture.ErrFilterAttach) {
		c.noFilter[iface] = err
	} else if err == nil {
		delete(c.noFilter, iface)
	}
}

// healthy reports whether every capture runs the filter its spec asks
// for, and why not.
func (c *captures) healthy() (bool, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var why []string
	for _, i := range c.ifaces {
		if err := c.noFilter[i]; err != nil {
			why = append(why, "capture "+i+": "+err.Error())
		}
	}
	return len(why) == 0, why
}

// wake makes a capture waiting for iface retry at once.
func (c *captures) wake(iface string) {
	if ch := c.wakeups[iface]; ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// openAll opens every interface once, before READY, and returns how many
// are attached; serve reopens the others. Those it could not open are
// not logged here: the ready service says, once, which interfaces the
// daemon waits for (waiting).
func (c *captures) openAll() int {
	n := 0
	for _, i := range c.ifaces {
		if _, err := c.open(i); err == nil {
			n++
		}
	}
	return n
}

// waiting describes the interfaces without a capture ("later0 (capture:
// open later0: no such device)"); none when every one is captured.
func (c *captures) waiting() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, i := range c.ifaces {
		if st := c.state[i]; st != "up" {
			out = append(out, i+" ("+strings.TrimPrefix(st, "down: ")+")")
		}
	}
	return out
}

// openErr is why iface's last open failed; "" when it did not.
func (c *captures) openErr(iface string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := strings.CutPrefix(c.state[iface], "down: "); ok {
		return st
	}
	return ""
}

func (c *captures) open(iface string) (handle, error) {
	c.mu.Lock()
	spec := c.specLocked()
	c.mu.Unlock()
	h, err := c.openHandle(iface, spec)
	c.noteFilter(iface, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.state[iface] = "down: " + err.Error()
		return nil, err
	}
	if old := c.handles[iface]; old != nil {
		c.retireLocked(iface, old)
		old.Close()
	}
	c.handles[iface] = h
	c.state[iface] = "up"
	c.logFilterLocked(iface, h.Stats(), true)
	return h, nil
}

func (c *captures) logFilter(iface string, st capture.Stats, opened bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logFilterLocked(iface, st, opened)
}

// logFilterLocked says which kernel filter iface's capture runs: when it
// opens, and when a filter update changed its kind or exactness.
func (c *captures) logFilterLocked(iface string, st capture.Stats, opened bool) {
	now := filterState{kind: st.Filter, exact: st.FilterExact}
	if last, ok := c.filters[iface]; ok && last == now && !opened {
		return
	}
	c.filters[iface] = now
	switch st.Filter {
	case capture.FilterEBPF:
		c.log.Info(fmt.Sprintf("capture filter on %s: eBPF, exact (the doors' ports and addresses in kernel maps)", iface),
			"interface", iface, "filter", st.Filter.String(), "instructions", st.FilterInstructions)
	case capture.FilterClassic:
		msg := fmt.Sprintf("capture filter on %s: classic BPF (%d instructions)", iface, st.FilterInstructions)
		if st.EBPFErr != nil {
			msg += "; eBPF not available: " + st.EBPFErr.Error()
		}
		c.log.Info(msg, "interface", iface, "filter", st.Filter.String(), "instructions", st.FilterInstructions, "ebpf_error", st.EBPFErr)
		if !st.FilterExact {
			c.log.Info(fmt.Sprintf("capture filter on %s is coarser than the doors ask (%d instructions): the kernel lets more through, checked in user space", iface, st.FilterInstructions),
				"interface", iface, "instructions", st.FilterInstructions)
		}
	}
}

// serve is the "capture IFACE" component: it runs the handle and reopens
// it when it ends with an error (link down, interface deleted), beating
// while it waits so the supervisor sees a healthy component. A panic or
// an unexpected return is the supervisor's to restart.
func (c *captures) serve(ctx context.Context, iface string, beat *supervisor.Beater) error {
	backoff := 100 * time.Millisecond
	// What openAll met before READY was said by the ready service.
	logged := c.openErr(iface)
	reopening := false // the previous handle ended with an error
	for ctx.Err() == nil {
		c.mu.Lock()
		h := c.handles[iface]
		c.mu.Unlock()
		if h == nil {
			var err error
			if h, err = c.open(iface); err != nil {
				if err.Error() != logged {
					c.log.Warn("waiting to capture on "+iface, "interface", iface, "error", err)
					logged = err.Error()
				}
				if !c.wait(ctx, iface, backoff, beat) {
					return nil
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			switch {
			case reopening:
				c.log.Info("capturing on "+iface+" again", "interface", iface)
			case logged != "":
				c.log.Info("capturing on "+iface+" now: it was waited for", "interface", iface)
			}
		}
		backoff, logged, reopening = 100*time.Millisecond, "", false
		err := h.RunDeliver(ctx, c.deliver(), beat.Beat)
		c.mu.Lock()
		if c.handles[iface] == h {
			delete(c.handles, iface)
			c.retireLocked(iface, h)
		}
		if err != nil {
			c.state[iface] = "down: " + err.Error()
		}
		c.mu.Unlock()
		h.Close()
		st := h.Stats()
		c.log.Debug("capture stopped", "interface", iface, "read", st.Read, "delivered", st.Delivered, "kernel_drops", st.KernelDrops)
		if err != nil && ctx.Err() == nil {
			reopening = true
			c.log.Warn(fmt.Sprintf("capture on %s ended: %v; reopening", iface, err), "interface", iface)
			// A link that is down opens but fails its first read: wait
			// for it to come back rather than spin.
			if !c.wait(ctx, iface, backoff, beat) {
				return nil
			}
		}
	}
	return nil
}

// wait sleeps for d or until iface is woken, beating meanwhile; false
// when ctx ended.
func (c *captures) wait(ctx context.Context, iface string, d time.Duration, beat *supervisor.Beater) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(capture.HeartbeatInterval)
	defer tick.Stop()
	for {
		beat.Beat()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-c.wakeups[iface]:
			return true
		case <-tick.C:
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
		switch {
		case c.noFilter[i] != nil:
			st = "no filter: " + c.noFilter[i].Error()
		case st == "":
			st = "waiting"
		case st != "up":
			st = "waiting: " + strings.TrimPrefix(st, "down: ")
		}
		parts = append(parts, i+" ("+st+")")
	}
	return strings.Join(parts, ", ")
}

// retireLocked adds the counts of h, which is leaving c.handles, to
// iface's closed counts.
func (c *captures) retireLocked(iface string, h handle) {
	st := h.Stats()
	t := c.closed[iface]
	t.Packets += st.Delivered
	t.Drops += st.KernelDrops
	c.closed[iface] = t
}

// counters returns each interface's counts since the daemon started.
func (c *captures) counters() []metrics.Interface {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]metrics.Interface, 0, len(c.ifaces))
	for _, i := range c.ifaces {
		t := c.closed[i]
		t.Name = i
		if h := c.handles[i]; h != nil {
			st := h.Stats()
			t.Packets += st.Delivered
			t.Drops += st.KernelDrops
		}
		last := c.shown[i]
		t.Packets, t.Drops = max(t.Packets, last.Packets), max(t.Drops, last.Drops)
		c.shown[i] = t
		out = append(out, t)
	}
	return out
}

// status is each interface's part of sesame status: capturing, or
// waiting and why.
func (c *captures) status() []control.InterfaceStatus {
	counts := c.counters()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]control.InterfaceStatus, 0, len(c.ifaces))
	for k, i := range c.ifaces {
		st := control.InterfaceStatus{Name: i, Packets: counts[k].Packets, Drops: counts[k].Drops}
		switch s := c.state[i]; {
		case c.handles[i] != nil:
			st.State = "capturing"
			if f, ok := c.filters[i]; ok {
				st.Filter = f.kind.String()
			}
		case s == "":
			st.State = "starting"
		default:
			st.State, st.Why = "waiting", strings.TrimPrefix(s, "down: ")
		}
		if err := c.noFilter[i]; err != nil {
			st.Why = "no kernel filter: " + err.Error()
		}
		out = append(out, st)
	}
	return out
}

// health is what the watchdog and the rescue's heartbeat consult: every
// component beating, and every capture filtering as asked.
type health struct {
	hb   *supervisor.Heartbeats
	caps *captures
}

func (h health) Healthy(now time.Time) (bool, []string) {
	ok, stale := h.hb.Healthy(now)
	capsOK, why := h.caps.healthy()
	return ok && capsOK, append(stale, why...)
}

// capturesService opens every interface once, before READY, and has the
// supervisor run one "capture IFACE" component per interface, which
// reopens what is not open yet. Its stop closes the handles, which ends
// their reads.
func (d *daemon) capturesService() hook {
	return hook{name: "captures", start: func(context.Context) error {
		d.attach = d.caps.openAll()
		for _, iface := range d.caps.ifaces {
			d.sup.Add("capture "+iface, 3*capture.HeartbeatInterval+time.Second, supervisor.ServiceFunc(func(ctx context.Context, beat *supervisor.Beater) error {
				return d.caps.serve(ctx, iface, beat)
			}))
		}
		return nil
	}, stop: func(context.Context) error {
		d.caps.closeAll()
		return nil
	}}
}
