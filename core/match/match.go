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
// spoofed flood of first knocks cannot push out a real knocker. Knocks
// from sources that cannot be a remote knocker (loopback, unspecified,
// multicast, broadcast, link-local, the host's own addresses) never
// count. An IPv4-mapped IPv6 source is IPv6 traffic, not IPv4.
package match

import (
	"cmp"
	"net/netip"
	"slices"
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
	// Ignored counts knocks from sources that never count (see
	// IgnoredSource).
	Ignored   uint64
	Attempts  int // in progress now
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
	// tclass indexes Matcher.classes. Every door may have its own
	// timeout, so it is as wide as a door index.
	tclass  int32
	ageList int8 // 0: first-stage list, 1: advanced list
	v4      bool
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
	// order they started, so a FIFO per class (tl) keeps expiry O(1) per
	// class, and a min-heap of the non-empty classes, keyed by their
	// oldest attempt, finds the next one to expire in O(log classes).
	classes []time.Duration
	doorTC  []int32
	heap    []int32 // class indexes
	heapPos []int32 // class -> index in heap, none when its list is empty

	// Local addresses (where doors without a Target listen), split by
	// family like bySrc4/bySrc6.
	local4 map[uint32]struct{}
	local6 map[[16]byte]struct{}
	// The host's addresses (local ones included) and its subnets'
	// broadcast addresses: knocks from them never count.
	host []netip.Addr
	own4 map[uint32]struct{}
	own6 map[[16]byte]struct{}

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
		own4:   make(map[uint32]struct{}),
		own6:   make(map[[16]byte]struct{}),
		age:    [2]list{{none, none}, {none, none}},
		events: make([]Event, 0, 16),
	}
	m.setDoors(doors)
	return m
}

// SetLocal replaces the set of local addresses doors without a Target
// listen on. They are the host's own, so knocks from them never count.
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
	m.rebuildOwn()
}

// SetHost replaces the host's other addresses (those of interfaces not
// captured on) and its subnets' broadcast addresses: knocks from them, as
// from the local addresses, never count.
func (m *Matcher) SetHost(addrs []netip.Addr) {
	m.host = append(m.host[:0], addrs...)
	m.rebuildOwn()
}

func (m *Matcher) rebuildOwn() {
	clear(m.own4)
	clear(m.own6)
	for k := range m.local4 {
		m.own4[k] = struct{}{}
	}
	for k := range m.local6 {
		m.own6[k] = struct{}{}
	}
	for _, a := range m.host {
		if a = a.Unmap(); a.Is4() {
			m.own4[v4key(a.As16())] = struct{}{}
		} else if a.IsValid() {
			m.own6[a.WithZone("").As16()] = struct{}{}
		}
	}
	// An address that just became the host's may have attempts: end them
	// silently, so that ignored sources never hold any.
	for k := range m.own4 {
		src := [16]byte{10: 0xff, 11: 0xff, 12: byte(k >> 24), 13: byte(k >> 16), 14: byte(k >> 8), 15: byte(k)}
		m.dropSource(src, true)
		m.dropSource(src, false) // its IPv4-mapped IPv6 form
	}
	for k := range m.own6 {
		m.dropSource(k, false)
	}
}

// dropSource removes every attempt of a source.
func (m *Matcher) dropSource(src [16]byte, v4 bool) {
	for i := m.headOf(src, v4); i != none; i = m.headOf(src, v4) {
		m.remove(i)
	}
}

// IgnoredSource reports whether src can never be a knocker: an address
// that is not a remote host's unicast address (unspecified or in
// 0.0.0.0/8, loopback, multicast, the limited broadcast 255.255.255.255,
// link-local) judged after unmapping an IPv4-mapped address, so that
// ::ffff:127.0.0.1 is loopback too. Such sources are spoofed or local
// and knockd's semantics never wanted them.
func IgnoredSource(src netip.Addr) bool {
	u := src.Unmap()
	if !u.IsValid() || u.IsUnspecified() || u.IsLoopback() || u.IsMulticast() ||
		u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() || u.IsInterfaceLocalMulticast() {
		return true
	}
	if u.Is4() {
		b := u.As4()
		return b[0] == 0 || b == [4]byte{255, 255, 255, 255}
	}
	return false
}

// ignored reports whether a knock from src (As16 of the packet's source;
// v4 for an IPv4 packet) never counts: IgnoredSource, or one of the
// host's own addresses (after unmapping). IPv4, what floods are made of,
// is decided on the bytes.
func (m *Matcher) ignored(src [16]byte, v4 bool) bool {
	if !v4 {
		a := netip.AddrFrom16(src)
		if IgnoredSource(a) {
			return true
		}
		if !a.Is4In6() {
			_, ok := m.own6[src]
			return ok
		}
	} else if b0, b1 := src[12], src[13]; b0 == 0 || b0 == 127 || b0&0xf0 == 224 || b0 == 169 && b1 == 254 ||
		b0 == 255 && b1 == 255 && src[14] == 255 && src[15] == 255 {
		return true
	}
	_, ok := m.own4[v4key(src)]
	return ok
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
// reloaded knockd would drop them. It takes time linear in the doors and
// the attempts. The matcher keeps its own copy of doors.
func (m *Matcher) SetDoors(doors []Door) {
	// New doors by name (a door keeps its attempts only under its own
	// name): the first of each name, then a chain through sameName.
	byName := make(map[string]int32, len(doors))
	sameName := make([]int32, len(doors))
	for j := len(doors) - 1; j >= 0; j-- {
		sameName[j] = none
		if k, ok := byName[doors[j].Name]; ok {
			sameName[j] = k
		}
		byName[doors[j].Name] = int32(j)
	}
	remap := make([]int32, len(m.doors))
	used := make([]bool, len(doors))
	for i, od := range m.doors {
		remap[i] = none
		j, ok := byName[od.Name]
		for ; ok && j != none; j = sameName[j] {
			if !used[j] && sameDoor(od, doors[j]) {
				remap[i], used[j] = j, true
				break
			}
		}
	}
	// Collect survivors with their start times, then rebuild: timeout
	// classes may have changed.
	type keep struct {
		a     attempt
		start time.Duration
		// rank is the attempt's place in its source's chain, which is in
		// start order: attempts one packet started, in the doors' order
		// at that time. It breaks ties of start, also over several
		// reloads that renumber the doors (door indexes do not).
		rank int32
	}
	rank := make([]int32, len(m.slab))
	for _, l := range []list{m.age[0], m.age[1]} {
		for i := l.head; i != none; i = m.slab[i].nextAge {
			if m.slab[i].prevSrc != none {
				continue
			}
			// i heads its source's chain: number the chain once.
			n := int32(0)
			for j := i; j != none; j = m.slab[j].nextSrc {
				rank[j] = n
				n++
			}
		}
	}
	var kept []keep
	for _, l := range []list{m.age[0], m.age[1]} {
		for i := l.head; i != none; i = m.slab[i].nextAge {
			a := m.slab[i]
			if nd := remap[a.door]; nd != none {
				start := a.deadline - m.classes[a.tclass]
				kept = append(kept, keep{a, start, rank[i]})
				kept[len(kept)-1].a.door = nd
			}
		}
	}
	m.reset()
	m.setDoors(doors)
	// Re-insert in the old age order so eviction order is preserved.
	idx := make([]int32, len(kept))
	for n, k := range kept {
		i := m.alloc()
		a := &m.slab[i]
		*a = k.a
		a.tclass = m.doorTC[a.door]
		a.deadline = k.start + m.classes[a.tclass]
		m.linkAge(i)
		idx[n] = i
	}
	// Source chains and timeout lists are in start order (attempts one
	// packet started: in the old doors' order), which keeps events in the
	// order attempts started and each class's list sorted by deadline.
	order := make([]int, len(kept))
	for n := range order {
		order[n] = n
	}
	slices.SortFunc(order, func(x, y int) int {
		if c := cmp.Compare(kept[x].start, kept[y].start); c != 0 {
			return c
		}
		return cmp.Compare(kept[x].rank, kept[y].rank)
	})
	for _, n := range order {
		i := idx[n]
		m.linkSrc(i, m.headOf(m.slab[i].src, m.slab[i].v4))
		m.linkTO(i)
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
// attempts on that door are dropped. An empty seq disables the door. It
// costs the attempts in progress plus the doors sharing a port with the
// door, not a rebuild of every door.
func (m *Matcher) SetSequence(door int, seq []knock.Port) {
	for _, l := range []list{m.age[0], m.age[1]} {
		for i := l.head; i != none; {
			next := m.slab[i].nextAge
			if int(m.slab[i].door) == door {
				m.remove(i)
			}
			i = next
		}
	}
	d := &m.doors[door]
	m.unindex(int32(door), d)
	d.Sequence = slices.Clone(seq)
	d.Disabled = len(seq) == 0
	m.index(int32(door), d)
}

func (m *Matcher) setDoors(doors []Door) {
	m.doors = slices.Clone(doors)
	// Size hints: a large config has about a distinct port per knock,
	// and growing maps of 100k entries step by step is most of the cost.
	knocks := 0
	for i := range doors {
		knocks += len(doors[i].Sequence)
	}
	m.byPort = make(map[knock.Port][]int32, knocks)
	m.byFirst = make(map[knock.Port][]int32, len(doors))
	m.classes = m.classes[:0]
	m.doorTC = make([]int32, len(m.doors))
	classOf := make(map[time.Duration]int32)
	for i := range m.doors {
		d := &m.doors[i]
		tc, ok := classOf[d.Timeout]
		if !ok {
			tc = int32(len(m.classes))
			classOf[d.Timeout] = tc
			m.classes = append(m.classes, d.Timeout)
		}
		m.doorTC[i] = tc
		m.index(int32(i), d)
	}
	m.tl = make([]list, len(m.classes))
	m.heapPos = make([]int32, len(m.classes))
	for i := range m.tl {
		m.tl[i] = list{none, none}
		m.heapPos[i] = none
	}
	m.heap = m.heap[:0]
}

// index adds door i to the port indexes. Lists stay in door order, so
// parallel attempts start in the doors' order, as in knockd.
func (m *Matcher) index(i int32, d *Door) {
	if d.Disabled || len(d.Sequence) == 0 {
		return
	}
	m.byFirst[d.Sequence[0]] = insertSorted(m.byFirst[d.Sequence[0]], i)
	for j, p := range d.Sequence {
		if !containsPort(d.Sequence[:j], p) {
			m.byPort[p] = insertSorted(m.byPort[p], i)
		}
	}
}

// unindex removes door i from the port indexes.
func (m *Matcher) unindex(i int32, d *Door) {
	if d.Disabled || len(d.Sequence) == 0 {
		return
	}
	m.byFirst[d.Sequence[0]] = deleteSorted(m.byFirst, d.Sequence[0], i)
	for j, p := range d.Sequence {
		if !containsPort(d.Sequence[:j], p) {
			m.byPort[p] = deleteSorted(m.byPort, p, i)
		}
	}
}

// insertSorted adds i to an ascending list; appending, the common case
// while the indexes are built, costs nothing extra.
func insertSorted(l []int32, i int32) []int32 {
	if n := len(l); n == 0 || l[n-1] < i {
		return append(l, i)
	}
	at, found := slices.BinarySearch(l, i)
	if found {
		return l
	}
	return slices.Insert(l, at, i)
}

func deleteSorted(idx map[knock.Port][]int32, p knock.Port, i int32) []int32 {
	l := idx[p]
	at, found := slices.BinarySearch(l, i)
	if !found {
		return l
	}
	l = slices.Delete(l, at, at+1)
	if len(l) == 0 {
		delete(idx, p)
		return nil
	}
	return l
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
	m.heap = m.heap[:0]
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
	// No unmapping: an IPv4-mapped address in an IPv6 header is IPv6
	// traffic, with its own attempts, never an IPv4 knocker's.
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
	// whose sequence starts here begins one, in parallel, unless the
	// source never counts. Such a source has no attempts (none is ever
	// started, and rebuildOwn drops those of a source that becomes the
	// host's), so this is the one place to check it.
	// Nothing in the loop above removed an attempt (none was found), so
	// head is still the source's chain.
	if m.ignored(src, v4) {
		m.stats.Ignored++
		return m.events
	}
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
	if len(m.heap) == 0 {
		return time.Time{}, false
	}
	return m.epoch.Add(m.slab[m.tl[m.heap[0]].head].deadline), true
}

// expire removes overdue attempts oldest deadline first: the heap's top
// class holds the next attempt to expire, so timeouts are reported in
// the order they happened.
func (m *Matcher) expire(t time.Duration) {
	for len(m.heap) > 0 {
		i := m.tl[m.heap[0]].head
		a := &m.slab[i]
		if a.deadline > t {
			return
		}
		m.emit(Timeout, a.door, a.addr(), int(a.stage))
		m.remove(i)
	}
}

func (m *Matcher) emit(k Kind, door int32, src netip.Addr, stage int) {
	m.events = append(m.events, Event{Kind: k, Door: int(door), Src: src, Stage: stage})
}
