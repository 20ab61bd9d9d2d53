package netmon

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// script is a read function whose result the test sets.
type script struct {
	mu   sync.Mutex
	st   *netState
	err  error
	read int
}

func (s *script) set(st *netState, err error) {
	s.mu.Lock()
	s.st, s.err = st, err
	s.mu.Unlock()
}

func (s *script) readState() (*netState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read++
	if s.err != nil {
		return nil, s.err
	}
	// A fresh copy each time, as a real read is.
	st := newNetState()
	for i, l := range s.st.links {
		st.links[i] = l
	}
	for i, ps := range s.st.addrs {
		st.addrs[i] = map[netip.Prefix]bool{}
		for p := range ps {
			st.addrs[i][p] = true
		}
	}
	return st, nil
}

func state(links map[int]linkInfo, addrs map[int][]string) *netState {
	st := newNetState()
	for i, l := range links {
		st.links[i] = l
	}
	for i, ps := range addrs {
		st.addrs[i] = map[netip.Prefix]bool{}
		for _, p := range ps {
			st.addrs[i][netip.MustParsePrefix(p)] = true
		}
	}
	return st
}

// Polling reports what changed between two reads, as netlink would have,
// and nothing while nothing changes or a read fails.
func TestPollingReportsDifferences(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := &script{st: state(map[int]linkInfo{1: {"lo", true}, 2: {"eth0", false}}, nil)}
		m := &Monitor{events: make(chan Event, 64), stop: make(chan struct{}), done: make(chan struct{}), polling: true}
		om, err := newPollMon(2*time.Second, sc.readState, m.stop)
		if err != nil {
			t.Fatal(err)
		}
		m.om = om
		go m.run()
		defer m.Close()
		take := func() []Event {
			synctest.Wait()
			var evs []Event
			for {
				select {
				case e := <-m.Events():
					e.Index = 0
					evs = append(evs, e)
				default:
					return evs
				}
			}
		}

		time.Sleep(10 * time.Second)
		if evs := take(); len(evs) != 0 {
			t.Fatalf("events while nothing changed: %v", evs)
		}
		sc.set(state(map[int]linkInfo{1: {"lo", true}, 2: {"eth0", true}, 3: {"eth1", false}},
			map[int][]string{2: {"10.0.0.1/24"}}), nil)
		time.Sleep(time.Second)
		if evs := take(); len(evs) != 0 {
			t.Fatalf("events before the next poll: %v", evs)
		}
		time.Sleep(time.Second)
		want := []Event{
			{Kind: LinkUp, Ifname: "eth0"},
			{Kind: AddrAdded, Ifname: "eth0", Prefix: netip.MustParsePrefix("10.0.0.1/24")},
			{Kind: LinkCreated, Ifname: "eth1"},
		}
		if evs := take(); !slices.Equal(evs, want) {
			t.Fatalf("after a change: %v, want %v", evs, want)
		}
		sc.set(nil, errors.New("netlink: no buffer space"))
		time.Sleep(4 * time.Second)
		if evs := take(); len(evs) != 0 {
			t.Fatalf("events from a failed read: %v", evs)
		}
		sc.set(state(map[int]linkInfo{1: {"lo", true}}, nil), nil)
		time.Sleep(2 * time.Second)
		want = []Event{
			{Kind: AddrRemoved, Ifname: "eth0", Prefix: netip.MustParsePrefix("10.0.0.1/24")},
			{Kind: LinkDeleted, Ifname: "eth0"},
			{Kind: LinkDeleted, Ifname: "eth1"},
		}
		if evs := take(); !slices.Equal(evs, want) {
			t.Fatalf("after links went: %v, want %v", evs, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-m.Events(); ok {
			t.Fatal("Events not closed after Close")
		}
	})
}

// Without netlink notifications New polls and says so; it used to be the
// daemon that fell back, with a loop of its own.
func TestNewFallsBackToPolling(t *testing.T) {
	old := newNetlink
	t.Cleanup(func() { newNetlink = old })
	newNetlink = func(Options, <-chan struct{}) (osMon, error) {
		return nil, errors.New("netlink: operation not permitted")
	}
	var log syncbuf.Buffer
	m, err := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &log})})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Polling() {
		t.Error("not polling without netlink")
	}
	if !strings.Contains(log.String(), "polling interface addresses instead") || !strings.Contains(log.String(), "operation not permitted") {
		t.Errorf("the fallback was not logged with its cause:\n%s", log.String())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
