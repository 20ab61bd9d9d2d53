package netmon

import (
	"net"
	"net/netip"
	"time"
)

// pollMon is the source where netlink notifications are unavailable: it
// reads the interfaces every interval and reports what changed since the
// last read. Owned by the monitor's goroutine.
type pollMon struct {
	read  func() (*netState, error)
	tick  *time.Ticker
	stop  <-chan struct{}
	state *netState
}

// newPollMon reads the state it starts from; read is readInterfaces but
// for tests.
func newPollMon(every time.Duration, read func() (*netState, error), stop <-chan struct{}) (*pollMon, error) {
	st, err := read()
	if err != nil {
		return nil, err
	}
	return &pollMon{read: read, tick: time.NewTicker(every), stop: stop, state: st}, nil
}

// Receive reads the interfaces at every tick until they differ from the
// last read. A failed read is skipped: the next tick tries again.
func (p *pollMon) Receive() ([]Event, error) {
	for {
		select {
		case <-p.stop:
			return nil, errClosed
		case <-p.tick.C:
		}
		snap, err := p.read()
		if err != nil {
			continue
		}
		if evs := p.state.resync(snap); len(evs) > 0 {
			return evs, nil
		}
	}
}

// Close stops the ticker.
func (p *pollMon) Close() error {
	p.tick.Stop()
	return nil
}

// readInterfaces reads the links and addresses of the calling thread's
// network namespace through package net.
func readInterfaces() (*netState, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	st := newNetState()
	for _, ifi := range ifs {
		st.links[ifi.Index] = linkInfo{name: ifi.Name, up: ifi.Flags&net.FlagUp != 0}
		as, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if pn, ok := a.(*net.IPNet); ok {
				if p, ok := prefixOf(pn); ok {
					if st.addrs[ifi.Index] == nil {
						st.addrs[ifi.Index] = map[netip.Prefix]bool{}
					}
					st.addrs[ifi.Index][p] = true
				}
			}
		}
	}
	return st, nil
}
