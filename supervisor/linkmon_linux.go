package supervisor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkMonitorOptions tunes a LinkMonitor. Zero values pick the defaults.
type LinkMonitorOptions struct {
	// Namespace is the network namespace to watch. The zero value (fd 0
	// is never a namespace handle here) or netns.None() means the calling
	// thread's namespace at the time NewLinkMonitor runs; the monitor keeps its own handle to it, so
	// resubscribing later still opens sockets there. A handle passed in
	// stays owned by the caller.
	Namespace netns.NsHandle
	// Logger hears subscription losses and resyncs; nil means
	// hclog.NewNullLogger().
	Logger hclog.Logger
	// Buffer is the capacity of the Events channel (default 64).
	Buffer int
}

// LinkMonitor reports interfaces appearing, disappearing, going up or down
// and gaining or losing addresses in one network namespace, from netlink
// RTNLGRP_LINK and RTNLGRP_IPV4/IPV6_IFADDR notifications. Repeated kernel
// notifications are deduplicated. If a subscription dies (the kernel drops
// it with ENOBUFS when the consumer falls behind), the monitor resubscribes,
// re-reads the namespace and emits the difference, so consumers never keep
// a stale view. Its state is owned by the goroutine it starts.
type LinkMonitor struct {
	ns     netns.NsHandle
	ownNS  bool // ns was opened by NewLinkMonitor and is closed by Close
	h      *netlink.Handle
	log    hclog.Logger
	events chan LinkEvent
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when run has returned
	once   sync.Once

	state *netState // owned by run

	cur atomic.Pointer[subscription] // the live subscription, for tests to drop
}

// NewLinkMonitor subscribes to link and address changes in the namespace
// chosen by opts and starts delivering them on Events. The state it
// starts from is read after subscribing, so nothing happening in between
// is lost; that initial state is not reported as events (use Addrs).
func NewLinkMonitor(opts LinkMonitorOptions) (*LinkMonitor, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	m := &LinkMonitor{
		ns:     opts.Namespace,
		log:    opts.Logger,
		events: make(chan LinkEvent, opts.Buffer),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if m.ns == 0 || !m.ns.IsOpen() {
		ns, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("link monitor: current network namespace: %w", err)
		}
		m.ns, m.ownNS = ns, true
	}
	h, err := netlink.NewHandleAt(m.ns)
	if err != nil {
		m.closeNS()
		return nil, fmt.Errorf("link monitor: netlink handle: %w", err)
	}
	m.h = h
	sub, err := m.subscribe()
	if err != nil {
		m.h.Close()
		m.closeNS()
		return nil, err
	}
	m.state, err = m.snapshot()
	if err != nil {
		sub.stop()
		m.h.Close()
		m.closeNS()
		return nil, err
	}
	go m.run(sub)
	return m, nil
}

// Events delivers changes in the order the monitor learned them. It is
// closed after Close. A consumer that stops reading stalls the monitor,
// which then recovers through a resync once it reads again.
func (m *LinkMonitor) Events() <-chan LinkEvent { return m.events }

// Close stops the subscriptions, waits for the monitor's goroutine and
// closes Events. Safe to call more than once.
func (m *LinkMonitor) Close() error {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		m.h.Close()
		m.closeNS()
	})
	return nil
}

// Addrs returns the addresses currently on ifname in the monitor's
// namespace.
func (m *LinkMonitor) Addrs(ifname string) ([]netip.Addr, error) { return addrsWith(m.h, ifname) }

// Addrs returns the addresses currently on ifname in the calling thread's
// network namespace, for the daemon's initial snapshot.
func Addrs(ifname string) ([]netip.Addr, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("addrs %s: netlink handle: %w", ifname, err)
	}
	defer h.Close()
	return addrsWith(h, ifname)
}

func addrsWith(h *netlink.Handle, ifname string) ([]netip.Addr, error) {
	link, err := h.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("addrs %s: %w", ifname, err)
	}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addrs %s: %w", ifname, err)
	}
	out := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

func (m *LinkMonitor) closeNS() {
	if m.ownNS {
		m.ns.Close()
	}
}

// subscription is one pair of netlink subscriptions.
type subscription struct {
	links chan netlink.LinkUpdate
	addrs chan netlink.AddrUpdate
	done  chan struct{} // closed by stop; closes both sockets
	once  sync.Once
}

// stop closes both sockets and waits for netlink's goroutines, which
// block on sending, by draining the channels until netlink closes them.
func (s *subscription) stop() {
	s.once.Do(func() { close(s.done) })
	for range s.links {
	}
	for range s.addrs {
	}
}

func (m *LinkMonitor) subscribe() (*subscription, error) {
	s := &subscription{
		links: make(chan netlink.LinkUpdate, 64),
		addrs: make(chan netlink.AddrUpdate, 64),
		done:  make(chan struct{}),
	}
	logErr := func(err error) {
		select {
		case <-s.done:
			return // closing the subscription makes its pending receive fail
		case <-m.stop:
			return
		default:
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			m.log.Warn("netlink subscription error", "error", err)
		}
	}
	ns := m.ns
	if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{Namespace: &ns, ErrorCallback: logErr}); err != nil {
		return nil, fmt.Errorf("link monitor: subscribe to links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: logErr}); err != nil {
		close(s.addrs) // never handed to netlink; lets stop's drain finish
		s.stop()
		return nil, fmt.Errorf("link monitor: subscribe to addresses: %w", err)
	}
	m.cur.Store(s)
	return s, nil
}

func (m *LinkMonitor) snapshot() (*netState, error) {
	st := newNetState()
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("link monitor: list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		st.links[a.Index] = linkInfo{name: a.Name, up: a.Flags&net.FlagUp != 0}
	}
	addrs, err := m.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("link monitor: list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			if st.addrs[a.LinkIndex] == nil {
				st.addrs[a.LinkIndex] = map[netip.Prefix]bool{}
			}
			st.addrs[a.LinkIndex][p] = true
		}
	}
	return st, nil
}

func (m *LinkMonitor) run(sub *subscription) {
	defer close(m.done)
	defer close(m.events)
	for {
		lost := m.serve(sub)
		sub.stop()
		if !lost {
			return
		}
		m.log.Warn("netlink subscription lost, resubscribing and resyncing")
		for {
			var err error
			if sub, err = m.subscribe(); err == nil {
				var snap *netState
				if snap, err = m.snapshot(); err == nil {
					if !m.emit(m.state.resync(snap)) {
						sub.stop()
						return
					}
					break
				}
				sub.stop()
			}
			m.log.Error("link monitor resubscribe failed, retrying", "error", err)
			select {
			case <-m.stop:
				return
			case <-time.After(resubscribeDelay):
			}
		}
	}
}

// serve applies notifications until Close (false) or until a subscription
// ends on its own (true).
func (m *LinkMonitor) serve(sub *subscription) (lost bool) {
	for {
		select {
		case <-m.stop:
			return false
		case u, ok := <-sub.links:
			if !ok {
				return true
			}
			a := u.Link.Attrs()
			var evs []LinkEvent
			if u.Header.Type == unix.RTM_DELLINK {
				evs = m.state.delLink(a.Index)
			} else {
				evs = m.state.setLink(a.Index, a.Name, a.Flags&net.FlagUp != 0)
			}
			if !m.emit(evs) {
				return false
			}
		case u, ok := <-sub.addrs:
			if !ok {
				return true
			}
			p, valid := prefixOf(&u.LinkAddress)
			if !valid {
				continue
			}
			var evs []LinkEvent
			if _, known := m.state.links[u.LinkIndex]; !known && u.NewAddr {
				// The address socket ran ahead of the link socket: learn
				// the link now so that its LinkCreated comes first.
				if l, err := m.h.LinkByIndex(u.LinkIndex); err == nil {
					a := l.Attrs()
					evs = m.state.setLink(a.Index, a.Name, a.Flags&net.FlagUp != 0)
				}
			}
			evs = append(evs, m.state.setAddr(u.LinkIndex, p, u.NewAddr)...)
			if !m.emit(evs) {
				return false
			}
		}
	}
}

// emit delivers events; false means Close interrupted it.
func (m *LinkMonitor) emit(evs []LinkEvent) bool {
	for _, e := range evs {
		select {
		case m.events <- e:
		case <-m.stop:
			return false
		}
	}
	return true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	ones, bits := n.Mask.Size()
	if addr.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(addr, ones), true
}
