package match

import (
	"net/netip"
	"time"
)

// The attempt table is a slab of attempts threaded on three kinds of
// intrusive doubly-linked lists (per source, per eviction class, per
// timeout class), so that a packet costs a map lookup or two and pointer
// moves, never an allocation once the slab has grown to its working size.

func (a *attempt) addr() netip.Addr {
	if a.v4 {
		return netip.AddrFrom4([4]byte(a.src[12:]))
	}
	return netip.AddrFrom16(a.src)
}

func v4key(src [16]byte) uint32 {
	return uint32(src[12])<<24 | uint32(src[13])<<16 | uint32(src[14])<<8 | uint32(src[15])
}

func (m *Matcher) headOf(src [16]byte, v4 bool) int32 {
	var i int32
	var ok bool
	if v4 {
		i, ok = m.bySrc4[v4key(src)]
	} else {
		i, ok = m.bySrc6[src]
	}
	if !ok {
		return none
	}
	return i
}

func (m *Matcher) setHead(src [16]byte, v4 bool, i int32) {
	if v4 {
		m.bySrc4[v4key(src)] = i
	} else {
		m.bySrc6[src] = i
	}
}

func (m *Matcher) deleteHead(src [16]byte, v4 bool) {
	if v4 {
		delete(m.bySrc4, v4key(src))
	} else {
		delete(m.bySrc6, src)
	}
}

func (m *Matcher) alloc() int32 {
	if m.free != none {
		i := m.free
		m.free = m.slab[i].nextSrc
		return i
	}
	m.slab = append(m.slab, attempt{})
	return int32(len(m.slab) - 1)
}

// start records a new attempt that has matched its first knock. head is
// the source's chain as the caller knows it; start returns it updated,
// which saves a map lookup per attempt under a flood.
func (m *Matcher) start(src [16]byte, v4 bool, door int32, t time.Duration, head int32) int32 {
	if m.n >= m.max {
		if m.evictOldest() == src {
			head = m.headOf(src, v4) // the evicted one was this source's
		}
	}
	i := m.alloc()
	tc := m.doorTC[door]
	m.slab[i] = attempt{src: src, v4: v4, door: door, stage: 1, tclass: tc, deadline: t + m.classes[tc]}
	return m.linkWithHead(i, head)
}

// link puts slab[i] (fields src, v4, door, stage, tclass, deadline set)
// at the tail of its source, age and timeout lists.
func (m *Matcher) link(i int32) { m.linkWithHead(i, m.headOf(m.slab[i].src, m.slab[i].v4)) }

// linkWithHead is link when the source's chain head is known; it returns
// the (possibly new) head.
func (m *Matcher) linkWithHead(i, h int32) int32 {
	a := &m.slab[i]
	// Append to the source's chain so events come out in the order the
	// attempts started (doors' order, like knockd's list). Chains hold one
	// attempt per door the source is knocking on: short.
	a.prevSrc, a.nextSrc = none, none
	head := h
	if h == none {
		m.setHead(a.src, a.v4, i)
		head = i
	} else {
		for m.slab[h].nextSrc != none {
			h = m.slab[h].nextSrc
		}
		m.slab[h].nextSrc = i
		a.prevSrc = h
	}
	a.ageList = 0
	if a.stage >= 2 {
		a.ageList = 1
	}
	m.pushAge(i)
	l := &m.tl[a.tclass]
	a.prevTO, a.nextTO = l.tail, none
	if l.tail != none {
		m.slab[l.tail].nextTO = i
	} else {
		l.head = i
	}
	l.tail = i
	m.n++
	return head
}

func (m *Matcher) pushAge(i int32) {
	a := &m.slab[i]
	l := &m.age[a.ageList]
	a.prevAge, a.nextAge = l.tail, none
	if l.tail != none {
		m.slab[l.tail].nextAge = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (m *Matcher) unlinkAge(i int32) {
	a := &m.slab[i]
	l := &m.age[a.ageList]
	if a.prevAge != none {
		m.slab[a.prevAge].nextAge = a.nextAge
	} else {
		l.head = a.nextAge
	}
	if a.nextAge != none {
		m.slab[a.nextAge].prevAge = a.prevAge
	} else {
		l.tail = a.prevAge
	}
}

func (m *Matcher) moveToAdvanced(i int32) {
	m.unlinkAge(i)
	m.slab[i].ageList = 1
	m.pushAge(i)
}

// remove unlinks slab[i] from every list and frees it. The map is only
// touched when i heads its source's chain.
func (m *Matcher) remove(i int32) {
	a := &m.slab[i]
	switch {
	case a.prevSrc != none:
		m.slab[a.prevSrc].nextSrc = a.nextSrc
	case a.nextSrc == none:
		m.deleteHead(a.src, a.v4)
	default:
		m.setHead(a.src, a.v4, a.nextSrc)
	}
	if a.nextSrc != none {
		m.slab[a.nextSrc].prevSrc = a.prevSrc
	}
	m.unlinkAge(i)
	l := &m.tl[a.tclass]
	if a.prevTO != none {
		m.slab[a.prevTO].nextTO = a.nextTO
	} else {
		l.head = a.nextTO
	}
	if a.nextTO != none {
		m.slab[a.nextTO].prevTO = a.prevTO
	} else {
		l.tail = a.prevTO
	}
	*a = attempt{nextSrc: m.free}
	m.free = i
	m.n--
}

// evictOldest drops the oldest first-stage attempt (else the oldest
// advanced one) and returns its source.
func (m *Matcher) evictOldest() [16]byte {
	for _, l := range m.age {
		if l.head != none {
			src := m.slab[l.head].src
			m.stats.Evictions++
			m.remove(l.head)
			return src
		}
	}
	return [16]byte{}
}
