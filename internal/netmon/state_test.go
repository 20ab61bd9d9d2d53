package netmon

import (
	"net/netip"
	"slices"
	"testing"
)

func TestNetState(t *testing.T) {
	p1 := netip.MustParsePrefix("10.77.0.1/24")
	p2 := netip.MustParsePrefix("fd77::1/64")
	type step func(s *netState) []Event
	newLink := func(i int, name string, up bool) step {
		return func(s *netState) []Event { return s.setLink(i, name, up) }
	}
	delLink := func(i int) step { return func(s *netState) []Event { return s.delLink(i) } }
	addr := func(i int, p netip.Prefix, added bool) step {
		return func(s *netState) []Event { return s.setAddr(i, p, added) }
	}
	ev := func(k EventKind, name string, i int, p ...netip.Prefix) Event {
		e := Event{Kind: k, Ifname: name, Index: i}
		if len(p) > 0 {
			e.Prefix = p[0]
		}
		return e
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []Event
	}{
		{"create down", []step{newLink(2, "dummy0", false)},
			[]Event{ev(LinkCreated, "dummy0", 2)}},
		{"create up", []step{newLink(2, "dummy0", true)},
			[]Event{ev(LinkCreated, "dummy0", 2), ev(LinkUp, "dummy0", 2)}},
		{"up, repeated up, down", []step{newLink(2, "eth0", false), newLink(2, "eth0", true), newLink(2, "eth0", true), newLink(2, "eth0", false)},
			[]Event{ev(LinkCreated, "eth0", 2), ev(LinkUp, "eth0", 2), ev(LinkDown, "eth0", 2)}},
		{"address added once despite repeats", []step{newLink(2, "eth0", true), addr(2, p2, true), addr(2, p2, true)},
			[]Event{ev(LinkCreated, "eth0", 2), ev(LinkUp, "eth0", 2), ev(AddrAdded, "eth0", 2, p2)}},
		{"address removed, unknown removal ignored", []step{newLink(2, "eth0", false), addr(2, p1, true), addr(2, p1, false), addr(2, p1, false)},
			[]Event{ev(LinkCreated, "eth0", 2), ev(AddrAdded, "eth0", 2, p1), ev(AddrRemoved, "eth0", 2, p1)}},
		{"address on unknown link ignored", []step{addr(9, p1, true)}, nil},
		{"delete reports remaining addresses first", []step{newLink(2, "eth0", false), addr(2, p2, true), addr(2, p1, true), delLink(2), delLink(2)},
			[]Event{ev(LinkCreated, "eth0", 2), ev(AddrAdded, "eth0", 2, p2), ev(AddrAdded, "eth0", 2, p1),
				ev(AddrRemoved, "eth0", 2, p1), ev(AddrRemoved, "eth0", 2, p2), ev(LinkDeleted, "eth0", 2)}},
		{"rename is delete and create", []step{newLink(3, "eth0", true), addr(3, p1, true), newLink(3, "wan0", true)},
			[]Event{ev(LinkCreated, "eth0", 3), ev(LinkUp, "eth0", 3), ev(AddrAdded, "eth0", 3, p1),
				ev(AddrRemoved, "eth0", 3, p1), ev(LinkDeleted, "eth0", 3),
				ev(LinkCreated, "wan0", 3), ev(LinkUp, "wan0", 3), ev(AddrAdded, "wan0", 3, p1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newNetState()
			var got []Event
			for _, st := range tc.steps {
				got = append(got, st(s)...)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestNetStateResync(t *testing.T) {
	p1 := netip.MustParsePrefix("10.77.0.1/24")
	p2 := netip.MustParsePrefix("10.88.0.1/24")
	old := newNetState()
	old.setLink(1, "lo", true)
	old.setLink(2, "eth0", true)
	old.setAddr(2, p1, true)
	old.setLink(3, "gone0", false)
	old.setAddr(3, p2, true)

	snap := newNetState()
	snap.setLink(1, "lo", true)
	snap.setLink(2, "eth0", false) // went down and changed address
	snap.setAddr(2, p2, true)
	snap.setLink(4, "new0", true)

	got := old.resync(snap)
	want := []Event{
		{Kind: AddrRemoved, Ifname: "gone0", Index: 3, Prefix: p2},
		{Kind: LinkDeleted, Ifname: "gone0", Index: 3},
		{Kind: LinkDown, Ifname: "eth0", Index: 2},
		{Kind: AddrRemoved, Ifname: "eth0", Index: 2, Prefix: p1},
		{Kind: AddrAdded, Ifname: "eth0", Index: 2, Prefix: p2},
		{Kind: LinkCreated, Ifname: "new0", Index: 4},
		{Kind: LinkUp, Ifname: "new0", Index: 4},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resync events:\n got %v\nwant %v", got, want)
	}
	if again := old.resync(snap); len(again) != 0 {
		t.Fatalf("second resync to the same snapshot reported %v", again)
	}
}

func TestEventString(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Kind: AddrAdded, Ifname: "eth0", Prefix: netip.MustParsePrefix("fd77::1/64")}, "addr-added eth0 fd77::1/64"},
		{Event{Kind: LinkDown, Ifname: "eth0"}, "link-down eth0"},
		{Event{Kind: 99, Ifname: "x"}, "EventKind(99) x"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
