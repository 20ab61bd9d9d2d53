package netmon

import (
	"net/netip"
	"slices"
)

type linkInfo struct {
	name string
	up   bool
}

// netState is what a Monitor knows about a namespace; its methods apply
// one kernel notification (or, for resync, a whole snapshot) and return
// the events it implies, which deduplicates the kernel's repeats (IPv6
// addresses are re-announced on every flag or lifetime change). Owned by
// the monitor's goroutine.
type netState struct {
	links map[int]linkInfo
	addrs map[int]map[netip.Prefix]bool
}

func newNetState() *netState {
	return &netState{links: map[int]linkInfo{}, addrs: map[int]map[netip.Prefix]bool{}}
}

// setLink applies an RTM_NEWLINK.
func (s *netState) setLink(index int, name string, up bool) []Event {
	old, known := s.links[index]
	var evs []Event
	if known && old.name != name {
		addrs := s.addrs[index]
		evs = append(evs, s.delLink(index)...)
		s.addrs[index] = addrs // kept for the re-announcement below
		known = false
	}
	s.links[index] = linkInfo{name: name, up: up}
	switch {
	case !known:
		evs = append(evs, Event{Kind: LinkCreated, Ifname: name, Index: index})
		if up {
			evs = append(evs, Event{Kind: LinkUp, Ifname: name, Index: index})
		}
		// Addresses that arrived under the old name are re-announced.
		for _, p := range sortedPrefixes(s.addrs[index]) {
			evs = append(evs, Event{Kind: AddrAdded, Ifname: name, Index: index, Prefix: p})
		}
	case old.up != up:
		kind := LinkDown
		if up {
			kind = LinkUp
		}
		evs = append(evs, Event{Kind: kind, Ifname: name, Index: index})
	}
	return evs
}

// delLink applies an RTM_DELLINK.
func (s *netState) delLink(index int) []Event {
	info, known := s.links[index]
	if !known {
		return nil
	}
	var evs []Event
	for _, p := range sortedPrefixes(s.addrs[index]) {
		evs = append(evs, Event{Kind: AddrRemoved, Ifname: info.name, Index: index, Prefix: p})
	}
	delete(s.addrs, index)
	delete(s.links, index)
	return append(evs, Event{Kind: LinkDeleted, Ifname: info.name, Index: index})
}

// setAddr applies an RTM_NEWADDR (added) or RTM_DELADDR. The link must be
// known (setLink first); addresses of unknown links are ignored.
func (s *netState) setAddr(index int, p netip.Prefix, added bool) []Event {
	info, known := s.links[index]
	if !known {
		return nil
	}
	set := s.addrs[index]
	if added == set[p] {
		return nil
	}
	if added {
		if set == nil {
			set = map[netip.Prefix]bool{}
			s.addrs[index] = set
		}
		set[p] = true
		return []Event{{Kind: AddrAdded, Ifname: info.name, Index: index, Prefix: p}}
	}
	delete(set, p)
	return []Event{{Kind: AddrRemoved, Ifname: info.name, Index: index, Prefix: p}}
}

// resync replaces the state with a fresh snapshot and returns the events
// that turn the old view into the new one, in index order.
func (s *netState) resync(snap *netState) []Event {
	var evs []Event
	for _, index := range sortedKeys(s.links) {
		if _, ok := snap.links[index]; !ok {
			evs = append(evs, s.delLink(index)...)
		}
	}
	for _, index := range sortedKeys(snap.links) {
		info := snap.links[index]
		evs = append(evs, s.setLink(index, info.name, info.up)...)
		for _, p := range sortedPrefixes(s.addrs[index]) {
			if !snap.addrs[index][p] {
				evs = append(evs, s.setAddr(index, p, false)...)
			}
		}
		for _, p := range sortedPrefixes(snap.addrs[index]) {
			evs = append(evs, s.setAddr(index, p, true)...)
		}
	}
	return evs
}

func sortedKeys(m map[int]linkInfo) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedPrefixes(m map[netip.Prefix]bool) []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return ps
}
