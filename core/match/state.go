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
	m.linkAge(i)
	head = m.linkSrc(i, head)
	m.linkTO(i)
	return head
}

// An attempt (fields src, v4, door, stage, tclass, deadline set) is put
// at the tail of three lists: linkAge, linkSrc and linkTO, in any order.

// linkAge appends slab[i] to its age list and counts it.
func (m *Matcher) linkAge(i int32) {
	a := &m.slab[i]
	a.ageList = 0
	if a.stage >= 2 {
		a.ageList = 1
	}
	m.pushAge(i)
	m.n++
}

// linkSrc appends slab[i] to its source's chain; h is the chain's head as
// the caller knows it. It returns the (possibly new) head.
func (m *Matcher) linkSrc(i, h int32) int32 {
	a := &m.slab[i]
	// Append to the source's chain so events come out in the order the
	// attempts started (doors' order, like knockd's list). Chains hold one
	// attempt per door the source is knocking on: short.
	a.prevSrc, a.nextSrc = none, none
	if h == none {
		m.setHead(a.src, a.v4, i)
		return i
	}
	head := h
	for m.slab[h].nextSrc != none {
		h = m.slab[h].nextSrc
	}
	m.slab[h].nextSrc = i
	a.prevSrc = h
	return head
}

// linkTO appends slab[i] to its timeout class's list; a class that was
// empty joins the heap.
func (m *Matcher) linkTO(i int32) {
	a := &m.slab[i]
	c := a.tclass
	l := &m.tl[c]
	a.prevTO, a.nextTO = l.tail, none
	if l.tail != none {
		m.slab[l.tail].nextTO = i
	} else {
		l.head = i
	}
	l.tail = i
	if l.head == i {
		m.heapPush(c)
	}
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
	c := a.tclass
	l := &m.tl[c]
	if a.prevTO != none {
		m.slab[a.prevTO].nextTO = a.nextTO
	} else {
		// The class's oldest attempt goes: its heap key changes.
		l.head = a.nextTO
		if l.head == none {
			m.heapRemove(c)
		} else {
			m.heapFix(c)
		}
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

// The heap holds the timeout classes with attempts, ordered by their
// oldest attempt (expiresBefore); heapPos tracks each class's place.

func (m *Matcher) heapLess(x, y int) bool {
	return m.expiresBefore(m.tl[m.heap[x]].head, m.tl[m.heap[y]].head)
}

func (m *Matcher) heapSwap(x, y int) {
	m.heap[x], m.heap[y] = m.heap[y], m.heap[x]
	m.heapPos[m.heap[x]] = int32(x)
	m.heapPos[m.heap[y]] = int32(y)
}

func (m *Matcher) heapUp(x int) {
	for x > 0 {
		parent := (x - 1) / 2
		if !m.heapLess(x, parent) {
			return
		}
		m.heapSwap(x, parent)
		x = parent
	}
}

func (m *Matcher) heapDown(x int) {
	n := len(m.heap)
	for {
		least := x
		if l := 2*x + 1; l < n && m.heapLess(l, least) {
			least = l
		}
		if r := 2*x + 2; r < n && m.heapLess(r, least) {
			least = r
		}
		if least == x {
			return
		}
		m.heapSwap(x, least)
		x = least
	}
}

func (m *Matcher) heapPush(c int32) {
	m.heap = append(m.heap, c)
	m.heapPos[c] = int32(len(m.heap) - 1)
	m.heapUp(len(m.heap) - 1)
}

func (m *Matcher) heapRemove(c int32) {
	x := int(m.heapPos[c])
	last := len(m.heap) - 1
	if x != last {
		m.heapSwap(x, last)
	}
	m.heap = m.heap[:last]
	m.heapPos[c] = none
	if x != last {
		m.heapDown(x)
		m.heapUp(x)
	}
}

// heapFix restores the order after class c's oldest attempt changed.
func (m *Matcher) heapFix(c int32) {
	x := int(m.heapPos[c])
	m.heapDown(x)
	m.heapUp(x)
}
