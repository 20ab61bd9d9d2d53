package netmon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
	"github.com/vishvananda/netns"
)

// nextEvent returns the next event that is not about an IPv6 link-local
// address (the kernel adds and removes those on its own as links go up
// and down) nor about a veth peer (named with a "p" suffix; the test
// kernel has no dummy links, so the test uses veth pairs).
func nextEvent(t *testing.T, m *Monitor) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-m.Events():
			if !ok {
				t.Fatal("Events closed")
			}
			if e.Prefix.IsValid() && e.Addr().IsLinkLocalUnicast() || strings.HasSuffix(e.Ifname, "p") {
				continue
			}
			return e
		case <-deadline:
			t.Fatal("no link event within 5s")
		}
	}
}

func wantEvents(t *testing.T, m *Monitor, want ...Event) {
	t.Helper()
	for _, w := range want {
		got := nextEvent(t, m)
		got.Index = 0 // indexes are the kernel's to choose
		if got != w {
			t.Fatalf("event = %v, want %v", got, w)
		}
	}
}

func TestMonitorInNamespace(t *testing.T) {
	for _, how := range []string{"opened inside ns.Do", "Namespace option"} {
		t.Run(how, func(t *testing.T) {
			ns := netnstest.NewNS(t, "lnk")
			var m *Monitor
			var err error
			var sink syncbuf.Buffer
			if how == "opened inside ns.Do" {
				err = ns.Do(func() (err error) {
					m, err = New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &sink, Level: hclog.Trace})})
					return err
				})
			} else {
				h, herr := netns.GetFromName(ns.Name)
				if herr != nil {
					t.Fatal(herr)
				}
				t.Cleanup(func() { h.Close() })
				m, err = New(Options{Namespace: h, Logger: hclog.New(&hclog.LoggerOptions{Output: &sink, Level: hclog.Trace})})
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			if m.Polling() {
				t.Fatal("polling although netlink is there")
			}

			v4 := netip.MustParsePrefix("10.99.0.1/24")
			v6 := netip.MustParsePrefix("fd99::1/64")
			ev := func(k EventKind, p ...netip.Prefix) Event {
				e := Event{Kind: k, Ifname: "dummy0"}
				if len(p) > 0 {
					e.Prefix = p[0]
				}
				return e
			}
			ns.MustRun("ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy0p")
			wantEvents(t, m, ev(LinkCreated))
			ns.MustRun("ip", "addr", "add", v4.String(), "dev", "dummy0")
			wantEvents(t, m, ev(AddrAdded, v4))
			ns.MustRun("ip", "link", "set", "dummy0", "up")
			wantEvents(t, m, ev(LinkUp))
			ns.MustRun("ip", "-6", "addr", "add", v6.String(), "dev", "dummy0", "nodad")
			wantEvents(t, m, ev(AddrAdded, v6))

			ns.MustRun("ip", "addr", "del", v4.String(), "dev", "dummy0")
			wantEvents(t, m, ev(AddrRemoved, v4))
			ns.MustRun("ip", "link", "set", "dummy0", "down")
			// Going down drops the IPv6 address (keep_addr_on_down=0); the
			// kernel may report that before or after the link change.
			a, b := nextEvent(t, m), nextEvent(t, m)
			a.Index, b.Index = 0, 0
			if !(a == ev(LinkDown) && b == ev(AddrRemoved, v6) || a == ev(AddrRemoved, v6) && b == ev(LinkDown)) {
				t.Fatalf("after link down: %v, %v; want link-down and removal of %v", a, b, v6)
			}

			// A lost subscription is replaced, and what changed meanwhile
			// is reported from a fresh read of the namespace.
			ns.MustRun("ip", "addr", "add", v4.String(), "dev", "dummy0")
			wantEvents(t, m, ev(AddrAdded, v4))
			nl := m.om.(*netlinkMon)
			nl.cur.Load().once.Do(func() { close(nl.cur.Load().done) })
			ns.MustRun("ip", "link", "set", "dummy0", "up")
			wantEvents(t, m, ev(LinkUp))
			if !strings.Contains(sink.String(), "subscription lost") {
				t.Fatalf("the dropped subscription was not noticed; log:\n%s", sink.String())
			}

			// Deleting may take the link down first (the link and address
			// sockets race, so in either order with the address removal);
			// the link is reported gone last.
			ns.MustRun("ip", "link", "del", "dummy0")
			var seq []Event
			for len(seq) == 0 || seq[len(seq)-1] != ev(LinkDeleted) {
				e := nextEvent(t, m)
				e.Index = 0
				seq = append(seq, e)
			}
			rest := slices.DeleteFunc(slices.Clone(seq[:len(seq)-1]), func(e Event) bool { return e == ev(LinkDown) })
			if !slices.Equal(rest, []Event{ev(AddrRemoved, v4)}) {
				t.Fatalf("deleting dummy0 reported %v, want the removal of %v, then link-deleted (link-down optional)", seq, v4)
			}

			// A link created after start, with an address at once.
			ns.MustRun("ip", "link", "add", "dummy1", "type", "veth", "peer", "name", "dummy1p")
			ns.MustRun("ip", "addr", "add", "10.98.0.1/24", "dev", "dummy1")
			wantEvents(t, m,
				Event{Kind: LinkCreated, Ifname: "dummy1"},
				Event{Kind: AddrAdded, Ifname: "dummy1", Prefix: netip.MustParsePrefix("10.98.0.1/24")})

			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if _, ok := <-m.Events(); ok {
				// Drain anything queued; the channel must end closed.
				for range m.Events() {
				}
			}
			if err := m.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}
