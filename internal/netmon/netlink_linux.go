package netmon

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

// netlinkMon is the netlink source: a pair of subscriptions and the
// state their notifications are applied to. Everything but cur is owned
// by the monitor's goroutine (New's, before it starts).
type netlinkMon struct {
	ns    netns.NsHandle
	ownNS bool // ns was opened by newNetlinkMon and is closed by Close
	h     *netlink.Handle
	log   hclog.Logger
	stop  <-chan struct{} // the monitor's: closed by Monitor.Close

	state *netState
	sub   *subscription // the live subscription; nil once lost

	cur atomic.Pointer[subscription] // sub, for tests to drop
}

// resubscribeDelay spaces out attempts to re-establish a lost subscription.
const resubscribeDelay = 500 * time.Millisecond

// newNetlinkMon subscribes to link and address changes in the namespace
// opts names, then reads the state it starts from.
func newNetlinkMon(opts Options, stop <-chan struct{}) (*netlinkMon, error) {
	m := &netlinkMon{ns: opts.Namespace, log: opts.Logger, stop: stop}
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
	m.sub = sub
	return m, nil
}

// Close stops the subscription and releases the handles.
func (m *netlinkMon) Close() error {
	if m.sub != nil {
		m.sub.stop()
		m.sub = nil
	}
	m.h.Close()
	m.closeNS()
	return nil
}

func (m *netlinkMon) closeNS() {
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

func (m *netlinkMon) subscribe() (*subscription, error) {
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

func (m *netlinkMon) snapshot() (*netState, error) {
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

// Receive applies notifications until one changes something and returns
// the events; a subscription that ends on its own is replaced, and the
// events are then those of a fresh read against the state.
func (m *netlinkMon) Receive() ([]Event, error) {
	for {
		if m.sub == nil {
			return m.resubscribe()
		}
		select {
		case <-m.stop:
			return nil, errClosed
		case u, ok := <-m.sub.links:
			if !ok {
				m.lost()
				continue
			}
			a := u.Link.Attrs()
			var evs []Event
			if u.Header.Type == unix.RTM_DELLINK {
				evs = m.state.delLink(a.Index)
			} else {
				evs = m.state.setLink(a.Index, a.Name, a.Flags&net.FlagUp != 0)
			}
			if len(evs) > 0 {
				return evs, nil
			}
		case u, ok := <-m.sub.addrs:
			if !ok {
				m.lost()
				continue
			}
			p, valid := prefixOf(&u.LinkAddress)
			if !valid {
				continue
			}
			var evs []Event
			if _, known := m.state.links[u.LinkIndex]; !known && u.NewAddr {
				// The address socket ran ahead of the link socket: learn
				// the link now so that its LinkCreated comes first.
				if l, err := m.h.LinkByIndex(u.LinkIndex); err == nil {
					a := l.Attrs()
					evs = m.state.setLink(a.Index, a.Name, a.Flags&net.FlagUp != 0)
				}
			}
			evs = append(evs, m.state.setAddr(u.LinkIndex, p, u.NewAddr)...)
			if len(evs) > 0 {
				return evs, nil
			}
		}
	}
}

// lost drops a subscription that ended on its own.
func (m *netlinkMon) lost() {
	m.sub.stop()
	m.sub = nil
	m.log.Warn("netlink subscription lost, resubscribing and resyncing")
}

// resubscribe subscribes again, retrying until it works or stop, and
// returns the difference between the state and a fresh read.
func (m *netlinkMon) resubscribe() ([]Event, error) {
	for {
		sub, err := m.subscribe()
		if err == nil {
			var snap *netState
			if snap, err = m.snapshot(); err == nil {
				m.sub = sub
				return m.state.resync(snap), nil
			}
			sub.stop()
		}
		m.log.Error("link monitor resubscribe failed, retrying", "error", err)
		select {
		case <-m.stop:
			return nil, errClosed
		case <-time.After(resubscribeDelay):
		}
	}
}
