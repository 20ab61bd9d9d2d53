// Package match is Sesame's knock matcher: a pure state machine that takes
// a decoded packet and the current time and returns what happened (a
// stage reached, a door opened, an attempt timed out). It does no I/O and
// takes no locks: one goroutine owns a Matcher. Grants, commands and
// logging are the caller's business.
//
// It follows knockd 0.8's matching rules, with these deliberate changes:
// a repeat of the previous stage's knock is ignored rather than resetting
// the attempt; timeouts run on the caller's monotonic clock with
// sub-second precision and expire eagerly (Expire); and state is bounded
// by MaxAttempts, evicting first-stage attempts before advanced ones so a
// spoofed flood of first knocks cannot push out a real knocker.
package match

import (
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// Door is the matcher's view of a door.
type Door struct {
	Name     string
	Sequence []knock.Port
	Timeout  time.Duration
	Flags    knock.FlagMask
	Target   netip.Addr // zero: the door listens on local addresses
	Disabled bool       // an exhausted one-time door matches nothing
}

// Kind says what an Event reports.
type Kind uint8

const (
	// Stage: Src completed stage Stage (1-based) of Door.
	Stage Kind = iota + 1
	// Open: Src completed Door's sequence.
	Open
	// Timeout: Src's attempt on Door expired at stage Stage.
	Timeout
	// Reset: a wrong knock ended Src's attempt on Door at stage Stage
	// (knockd drops these silently; callers log them at debug level).
	Reset
	// Evictions are not events: under a flood they are the common case,
	// so they are only counted (Stats.Evictions).
)

var kindNames = [...]string{Stage: "stage", Open: "open", Timeout: "timeout", Reset: "reset"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind?"
}

// Event is one outcome. Door indexes the slice given to New or SetDoors.
type Event struct {
	Kind  Kind
	Door  int
	Src   netip.Addr
	Stage int
}

// Stats counts what the matcher has seen since it was created.
type Stats struct {
	Packets   uint64 // handed to Observe
	Invisible uint64 // not to a knock port/address of any door (or flags fail everywhere)
	Attempts  int    // in progress now
	Evictions uint64
}

const none = -1

// attempt holds no pointers, so the slab is never scanned by the GC and
// stores into it need no write barriers.
type attempt struct {
	// 64 bytes, so a freshly allocated slab keeps one attempt per cache
	// line: under a flood every attempt touched is a cold one.
	src      [16]byte      // As16 of the unmapped source
	deadline time.Duration // since the matcher's epoch
	door     int32
	stage    int32 // knocks matched so far
	prevSrc  int32 // the source's attempts, in start order
	nextSrc  int32
	prevAge  int32
	nextAge  int32
	prevTO   int32
	nextTO   int32
	tclass   int16
	ageList  int8 // 0: first-stage list, 1: advanced list
	v4       bool
}

type list struct{ head, tail int32 }

// Matcher holds per-source knock attempts. It is not safe for concurrent
// use: the owning goroutine calls every method.
type Matcher struct {
	doors []Door
	max   int

	// Door indexes by knock port: every door whose sequence has the port,
	// and the doors whose sequence starts with it.
	byPort  map[knock.Port][]int32
	byFirst map[knock.Port][]int32
	// Doors' timeouts, deduplicated: attempts of one class expire in the
	// order they started, so a FIFO per class keeps expiry O(1).
	classes []time.Duration
	doorTC  []int16

	// Local addresses, split by family like bySrc4/bySrc6.
	local4 map[uint32]struct{}
	local6 map[[16]byte]struct{}

	epoch    time.Time
	epochSet bool

	slab []attempt
	free int32 // free list through nextSrc
	// Each source's first attempt, by address: IPv4 sources (what floods
	// are made of) in a map with a 4-byte key, which Go's maps hash on a
	// fast path; IPv6 by the 16 bytes.
	bySrc4 map[uint32]int32
	bySrc6 map[[16]byte]int32
	age    [2]list // eviction order: first-stage attempts go first
	tl     []list  // per timeout class, oldest first
	n      int

	events []Event
	stats  Stats
}

// New returns a Matcher for doors, holding at most maxAttempts attempts.
func New(doors []Door, maxAttempts int) *Matcher {
	if maxAttempts < 1 {
		maxAttempts = 1
	}
	hint := maxAttempts
	if hint > 4096 {
		hint = 4096
	}
	m := &Matcher{
		max:    maxAttempts,
		free:   none,
		bySrc4: make(map[uint32]int32, hint),
		bySrc6: make(map[[16]byte]int32),
		local4: make(map[uint32]struct{}),
		local6: make(map[[16]byte]struct{}),
		age:    [2]list{{none, none}, {none, none}},
		events: make([]Event, 0, 16),
	}
	m.setDoors(doors)
	return m
}

// SetLocal replaces the set of local addresses doors without a Target
// listen on.
func (m *Matcher) SetLocal(addrs []netip.Addr) {
	clear(m.local4)
	clear(m.local6)
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			m.local4[v4key(a.As16())] = struct{}{}
		} else {
			m.local6[a.As16()] = struct{}{}
		}
	}
}

// Doors returns the doors the matcher uses (do not modify).
func (m *Matcher) Doors() []Door { return m.doors }

// Stats returns counters.
func (m *Matcher) Stats() Stats {
	s := m.stats
	s.Attempts = m.n
	return s
}

// SetDoors replaces the doors. Attempts on a door that exists in both
// sets with the same name, sequence and target are kept (with the new
// door's timeout and flags); all others are dropped silently, as a
// reloaded knockd would drop them.
func (m *Matcher) SetDoors(doors []Door) {
	remap := make([]int32, len(m.doors))
	used := make([]bool, len(doors))
	for i, od := range m.doors {
		remap[i] = none
		for j, nd := range doors {
			if !used[j] && sameDoor(od, nd) {
				remap[i], used[j] = int32(j), true
				break
			}
		}
	}
	// Collect survivors with their start times, then rebuild: timeout
	// classes may have changed.
	type keep struct {
		a     attempt
		start time.Duration
	}
	var kept []keep
	for _, l := range []list{m.age[0], m.age[1]} {
		for i := l.head; i != none; i = m.slab[i].nextAge {
			a := m.slab[i]
			if nd := remap[a.door]; nd != none {
				start := a.deadline - m.classes[a.tclass]
				a.prevSrc, a.nextSrc = none, none
				a.door = nd
				kept = append(kept, keep{a, start})
			}
		}
	}
	m.reset()
	m.setDoors(doors)
	// Re-insert in the old age order so eviction order is preserved.
	for _, k := range kept {
		i := m.alloc()
		a := &m.slab[i]
		*a = k.a
		a.tclass = m.doorTC[a.door]
		a.deadline = k.start + m.classes[a.tclass]
		m.link(i)
	}
}

func sameDoor(a, b Door) bool {
	if a.Name != b.Name || a.Target != b.Target || len(a.Sequence) != len(b.Sequence) || a.Disabled || b.Disabled {
		return false
	}
	for i := range a.Sequence {
		if a.Sequence[i] != b.Sequence[i] {
			return false
		}
	}
	return true
}

// SetSequence changes one door's sequence (a one-time sequence was used);
// attempts on that door are dropped. An empty seq disables the door.
func (m *Matcher) SetSequence(door int, seq []knock.Port) {
	doors := append([]Door(nil), m.doors...)
	doors[door].Sequence = seq
	doors[door].Disabled = len(seq) == 0
	// A changed sequence makes sameDoor false for this door only.
	m.SetDoors(doors)
}

func (m *Matcher) setDoors(doors []Door) {
	m.doors = doors
	m.byPort = make(map[knock.Port][]int32)
	m.byFirst = make(map[knock.Port][]int32)
	m.classes = m.classes[:0]
	m.doorTC = make([]int16, len(doors))
	for i, d := range doors {
		tc := -1
		for c, t := range m.classes {
			if t == d.Timeout {
				tc = c
			}
		}
		if tc < 0 {
			tc = len(m.classes)
			m.classes = append(m.classes, d.Timeout)
		}
		m.doorTC[i] = int16(tc)
		if d.Disabled || len(d.Sequence) == 0 {
			continue
		}
		m.byFirst[d.Sequence[0]] = append(m.byFirst[d.Sequence[0]], int32(i))
		for j, p := range d.Sequence {
			if !containsPort(d.Sequence[:j], p) {
				m.byPort[p] = append(m.byPort[p], int32(i))
			}
		}
	}
	m.tl = make([]list, len(m.classes))
	for i := range m.tl {
		m.tl[i] = list{none, none}
	}
}

func containsPort(ps []knock.Port, p knock.Port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func (m *Matcher) reset() {
	m.slab = m.slab[:0]
	m.free = none
	clear(m.bySrc4)
	clear(m.bySrc6)
	m.age = [2]list{{none, none}, {none, none}}
	m.n = 0
}

// mono converts now to a duration on the matcher's clock. The first call
// fixes the epoch; time.Time values carrying a monotonic reading (from
// time.Now) make every later subtraction monotonic.
func (m *Matcher) mono(now time.Time) time.Duration {
	if !m.epochSet {
		m.epoch, m.epochSet = now, true
	}
	return now.Sub(m.epoch)
}

func (m *Matcher) isLocal(dst netip.Addr) bool {
	if dst.Is4() {
		_, ok := m.local4[v4key(dst.As16())]
		return ok
	}
	_, ok := m.local6[dst.As16()]
	return ok
}

// accepts reports whether a knock to dst counts for d; isLocal says
// whether dst is one of the local addresses (looked up once per packet).
func accepts(d *Door, dst netip.Addr, isLocal bool) bool {
	if d.Target.IsValid() {
		return dst == d.Target
	}
	return isLocal
}

func flagsOK(d *Door, p *knock.Packet) bool {
	return p.Proto != knock.TCP || d.Flags.Match(p.Flags)
}

// Observe feeds one packet seen at now. The returned events are valid
// until the next call on the Matcher. It expires overdue attempts first,
// so their Timeout events come before the packet's own.
func (m *Matcher) Observe(p knock.Packet, now time.Time) []Event {
	m.events = m.events[:0]
	t := m.mono(now)
	m.expire(t)
	m.stats.Packets++
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	key := knock.Port{Num: p.Port, Proto: p.Proto}
	candidates := m.byPort[key]
	if len(candidates) == 0 {
		m.stats.Invisible++
		return m.events
	}
	isLocal := m.isLocal(p.Dst)

	// A packet no door would see is invisible: knockd's capture filter
	// never delivers it, so it must not reset anything here either.
	visible := false
	for _, di := range candidates {
		d := &m.doors[di]
		if accepts(d, p.Dst, isLocal) && flagsOK(d, &p) {
			visible = true
			break
		}
	}
	if !visible {
		m.stats.Invisible++
		return m.events
	}

	src := p.Src.As16()
	v4 := p.Src.Is4()
	head := m.headOf(src, v4)
	found := false
	for i := head; i != none; {
		a := &m.slab[i]
		next := a.nextSrc
		d := &m.doors[a.door]
		if !accepts(d, p.Dst, isLocal) {
			i = next
			continue
		}
		found = true
		switch {
		case !flagsOK(d, &p):
			// Flags that fail the door's mask neither advance nor reset.
		case d.Sequence[a.stage] == key:
			a.stage++
			m.emit(Stage, a.door, p.Src, int(a.stage))
			if int(a.stage) == len(d.Sequence) {
				m.emit(Open, a.door, p.Src, int(a.stage))
				m.remove(i)
			} else if a.stage == 2 {
				m.moveToAdvanced(i)
			}
		case a.stage > 0 && d.Sequence[a.stage-1] == key:
			// A retransmitted SYN or a client that sends twice.
		default:
			m.emit(Reset, a.door, p.Src, int(a.stage))
			m.remove(i)
		}
		i = next
	}
	if found {
		return m.events
	}

	// No attempt in progress for this source and destination: every door
	// whose sequence starts here begins one, in parallel.
	// Nothing in the loop above removed an attempt (none was found), so
	// head is still the source's chain.
	for _, di := range m.byFirst[key] {
		d := &m.doors[di]
		if !accepts(d, p.Dst, isLocal) || !flagsOK(d, &p) {
			continue
		}
		if len(d.Sequence) > 1 {
			head = m.start(src, v4, di, t, head)
		}
		m.emit(Stage, di, p.Src, 1)
		if len(d.Sequence) == 1 {
			m.emit(Open, di, p.Src, 1)
		}
	}
	return m.events
}

// Expire removes attempts whose timeout has passed at now and returns
// their Timeout events (valid until the next call).
func (m *Matcher) Expire(now time.Time) []Event {
	m.events = m.events[:0]
	m.expire(m.mono(now))
	return m.events
}

// expiresBefore orders attempts by deadline, then by start time.
func (m *Matcher) expiresBefore(i, j int32) bool {
	a, b := &m.slab[i], &m.slab[j]
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.deadline-m.classes[a.tclass] < b.deadline-m.classes[b.tclass]
}

// NextDeadline reports when the oldest attempt will time out.
func (m *Matcher) NextDeadline() (time.Time, bool) {
	var best time.Duration
	ok := false
	for _, l := range m.tl {
		if l.head != none {
			if d := m.slab[l.head].deadline; !ok || d < best {
				best, ok = d, true
			}
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return m.epoch.Add(best), true
}

// expire removes overdue attempts oldest deadline first, merging the
// per-class lists so timeouts are reported in the order they happened.
func (m *Matcher) expire(t time.Duration) {
	for {
		best := int32(none)
		for _, l := range m.tl {
			if h := l.head; h != none && m.slab[h].deadline <= t && (best == none || m.expiresBefore(h, best)) {
				best = h
			}
		}
		if best == none {
			return
		}
		a := &m.slab[best]
		m.emit(Timeout, a.door, a.addr(), int(a.stage))
		m.remove(best)
	}
}

func (m *Matcher) emit(k Kind, door int32, src netip.Addr, stage int) {
	m.events = append(m.events, Event{Kind: k, Door: int(door), Src: src, Stage: stage})
}
