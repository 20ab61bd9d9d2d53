// Package netmon reports the network changes sesamed follows: links
// appearing, disappearing, going up or down, and addresses added or
// removed, in one network namespace. The OS side sits behind osMon, an
// interface of two methods this package declares for itself: netlink
// notifications on Linux, and polling where those are unavailable, so a
// consumer sees the same Events either way. It also reads the addresses
// the daemon needs (HostAddrs, InterfaceAddrs, DefaultRouteInterfaces).
// It decides nothing about what a change means for captures or doors.
package netmon

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netns"
)

// EventKind says what changed on a network interface.
type EventKind uint8

// The kinds of Event. A link that appears already up is reported as
// LinkCreated followed by LinkUp; a deleted link's remaining addresses are
// reported as AddrRemoved before its LinkDeleted; a renamed link is
// reported as LinkDeleted under the old name and LinkCreated under the new.
const (
	LinkCreated EventKind = iota + 1
	LinkDeleted
	LinkUp   // administratively up (IFF_UP set)
	LinkDown // administratively down (IFF_UP cleared)
	AddrAdded
	AddrRemoved
)

var eventKindNames = [...]string{
	LinkCreated: "link-created", LinkDeleted: "link-deleted", LinkUp: "link-up",
	LinkDown: "link-down", AddrAdded: "addr-added", AddrRemoved: "addr-removed",
}

// String returns the kind's log name, e.g. "addr-added".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && eventKindNames[k] != "" {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event is one change to the interfaces or addresses of a network
// namespace.
type Event struct {
	Kind   EventKind
	Ifname string
	Index  int
	// Prefix is the address and its prefix length, for AddrAdded and
	// AddrRemoved; IPv4 addresses are plain 4-byte addresses, not mapped.
	Prefix netip.Prefix
}

// Addr returns the address of an AddrAdded or AddrRemoved event.
func (e Event) Addr() netip.Addr { return e.Prefix.Addr() }

// String formats the event for logs, e.g. "addr-added eth0 10.0.0.1/24".
func (e Event) String() string {
	if e.Kind == AddrAdded || e.Kind == AddrRemoved {
		return fmt.Sprintf("%s %s %s", e.Kind, e.Ifname, e.Prefix)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Ifname)
}

// osMon is the OS's side of a Monitor. It is made with the monitor's
// stop channel.
type osMon interface {
	// Receive blocks until it learns of changes and returns them, or
	// returns errClosed once stop is closed. It is called from the
	// monitor's goroutine only.
	Receive() ([]Event, error)
	// Close releases the source; the monitor calls it once, after its
	// goroutine has returned.
	Close() error
}

var errClosed = errors.New("netmon: closed")

// Options tune a Monitor. Zero values pick the defaults.
type Options struct {
	// Namespace is the network namespace to watch. The zero value (fd 0
	// is never a namespace handle here) or netns.None() means the calling
	// thread's namespace at the time New runs; the monitor keeps its own
	// handle to it, so resubscribing later still opens sockets there. A
	// handle passed in stays owned by the caller. Polling reads the
	// namespace of whichever thread it runs on: the process's.
	Namespace netns.NsHandle
	// Logger hears subscription losses, resyncs and the fallback to
	// polling; nil means hclog.NewNullLogger().
	Logger hclog.Logger
	// Buffer is the capacity of the Events channel (default 64).
	Buffer int
	// PollInterval is how often the namespace is read when netlink
	// notifications are unavailable (default 2 s).
	PollInterval time.Duration
}

// Monitor reports link and address changes in one network namespace. It
// follows netlink RTNLGRP_LINK and RTNLGRP_IPV4/IPV6_IFADDR notifications;
// when it cannot subscribe to them it polls the interfaces instead and
// reports the differences, so Events mean the same either way. Repeated
// notifications are deduplicated, and a lost subscription (the kernel
// drops one with ENOBUFS when the consumer falls behind) is replaced and
// what changed meanwhile is reported from a fresh read, so consumers
// never keep a stale view. Its state is owned by the goroutine it starts.
type Monitor struct {
	om      osMon
	polling bool
	events  chan Event
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when run has returned
	once    sync.Once
}

// newNetlink is the netlink source; tests replace it to see the fallback.
var newNetlink = func(opts Options, stop <-chan struct{}) (osMon, error) { return newNetlinkMon(opts, stop) }

// New starts reporting changes in the namespace opts names. The state it
// starts from is read after subscribing, so nothing happening in between
// is lost; that initial state is not reported as events. When netlink
// notifications are unavailable it logs why and polls; it fails only
// when the namespace cannot be read at all.
func New(opts Options) (*Monitor, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	m := &Monitor{events: make(chan Event, opts.Buffer), stop: make(chan struct{}), done: make(chan struct{})}
	om, err := newNetlink(opts, m.stop)
	if err != nil {
		opts.Logger.Warn("no netlink notifications, polling interface addresses instead", "error", err, "every", opts.PollInterval)
		if om, err = newPollMon(opts.PollInterval, readInterfaces, m.stop); err != nil {
			return nil, fmt.Errorf("netmon: %w", err)
		}
		m.polling = true
	}
	m.om = om
	go m.run()
	return m, nil
}

// Polling reports whether the monitor polls (netlink notifications were
// unavailable).
func (m *Monitor) Polling() bool { return m.polling }

// Events delivers changes in the order the monitor learned them. It is
// closed after Close. A consumer that stops reading stalls the monitor,
// which then recovers through a resync once it reads again.
func (m *Monitor) Events() <-chan Event { return m.events }

// Close stops the monitor, waits for its goroutine and closes Events.
// Safe to call more than once.
func (m *Monitor) Close() error {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		m.om.Close()
	})
	return nil
}

func (m *Monitor) run() {
	defer close(m.done)
	defer close(m.events)
	for {
		evs, err := m.om.Receive()
		if err != nil {
			return
		}
		for _, e := range evs {
			select {
			case m.events <- e:
			case <-m.stop:
				return
			}
		}
	}
}
