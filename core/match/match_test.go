package match

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

var (
	local  = netip.MustParseAddr("10.0.0.1")
	local6 = netip.MustParseAddr("fd00::1")
	target = netip.MustParseAddr("10.0.0.99")
	srcA   = netip.MustParseAddr("192.0.2.1")
	srcB   = netip.MustParseAddr("192.0.2.2")
	srcA6  = netip.MustParseAddr("2001:db8::1")
	t0     = time.Unix(1_700_000_000, 0)
)

func mapped(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }

func seq(ports ...string) []knock.Port {
	s, err := knock.ParseSequence(strings.Join(ports, ","))
	if err != nil {
		panic(err)
	}
	return s
}

// base is the shared notes' base door: 7000,8000,9000, 5 s, tcpflags syn.
func base() Door {
	return Door{Name: "base", Sequence: seq("7000", "8000", "9000"), Timeout: 5 * time.Second, Flags: knock.FlagMask{Set: knock.SYN}}
}

// k is one packet at an offset from t0.
type k struct {
	at    time.Duration
	src   netip.Addr
	dst   netip.Addr
	port  uint16
	proto knock.Proto
	flags uint8
}

func syn(at time.Duration, src netip.Addr, port uint16) k {
	return k{at: at, src: src, dst: local, port: port, proto: knock.TCP, flags: knock.SYN}
}

func udp(at time.Duration, src netip.Addr, port uint16) k {
	return k{at: at, src: src, dst: local, port: port, proto: knock.UDP}
}

func (x k) to(dst netip.Addr) k         { x.dst = dst; return x }
func (x k) withFlags(f uint8) k         { x.flags = f; return x }
func ms(n int) time.Duration            { return time.Duration(n) * time.Millisecond }
func run(m *Matcher, pkts []k) []string { return runUntil(m, pkts, 0) }

// runUntil feeds pkts, then expires at t0+end (when end > 0), and
// renders every event as "kind door src stage".
func runUntil(m *Matcher, pkts []k, end time.Duration) []string {
	var out []string
	render := func(evs []Event) {
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%s %s %s %d", e.Kind, m.Doors()[e.Door].Name, e.Src, e.Stage))
		}
	}
	for _, p := range pkts {
		render(m.Observe(knock.Packet{Src: p.src, Dst: p.dst, Port: p.port, Proto: p.proto, Flags: p.flags}, t0.Add(p.at)))
	}
	if end > 0 {
		render(m.Expire(t0.Add(end)))
	}
	return out
}

func opens(evs []string) []string {
	var o []string
	for _, e := range evs {
		if strings.HasPrefix(e, "open ") {
			o = append(o, e)
		}
	}
	return o
}

func newM(doors ...Door) *Matcher {
	m := New(doors, 1000)
	m.SetLocal([]netip.Addr{local, local6})
	return m
}

func TestConformance(t *testing.T) {
	synack := knock.SYN | knock.ACK
	tests := []struct {
		name  string
		doors []Door
		pkts  []k
		want  []string // open events
	}{
		{"in time opens once", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(100), srcA, 8000), syn(ms(200), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"third knock after timeout", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(100), srcA, 8000), syn(5*time.Second, srcA, 9000)},
			nil},
		{"ports outside every door are invisible", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 1234), udp(ms(2), srcA, 5555), syn(ms(3), srcA, 8000), syn(ms(4), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"another door's udp port invalidates at stage 2",
			[]Door{base(), {Name: "u", Sequence: seq("5555:udp", "6666:udp"), Timeout: 5 * time.Second}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000), udp(ms(2), srcA, 5555), syn(ms(3), srcA, 9000)},
			nil},
		{"udp to 8000 with no 8000/udp door is invisible", []Door{base()},
			[]k{syn(0, srcA, 7000), udp(ms(1), srcA, 8000), syn(ms(2), srcA, 8000), syn(ms(3), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"ack-only mid-sequence is ignored", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000).withFlags(knock.ACK), syn(ms(2), srcA, 8000), syn(ms(3), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"tcpflags=syn accepts syn+ack", []Door{base()},
			[]k{syn(0, srcA, 7000).withFlags(synack), syn(ms(1), srcA, 8000).withFlags(synack), syn(ms(2), srcA, 9000).withFlags(synack)},
			[]string{"open base 192.0.2.1 3"}},
		{"tcpflags=syn,!ack ignores syn+ack",
			[]Door{{Name: "strict", Sequence: seq("7000", "8000", "9000"), Timeout: 5 * time.Second, Flags: knock.FlagMask{Set: knock.SYN, Clear: knock.ACK}}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000).withFlags(synack), syn(ms(2), srcA, 9000)},
			nil},
		{"doors sharing a prefix: only the completed one opens",
			[]Door{base(), {Name: "alt", Sequence: seq("7000", "8000", "9001"), Timeout: 5 * time.Second, Flags: knock.FlagMask{Set: knock.SYN}}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000), syn(ms(2), srcA, 9001)},
			[]string{"open alt 192.0.2.1 3"}},
		{"two sources interleaved", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcB, 7000), syn(ms(2), srcA, 8000), syn(ms(3), srcB, 8000), syn(ms(4), srcB, 9000), syn(ms(5), srcA, 9000)},
			[]string{"open base 192.0.2.2 3", "open base 192.0.2.1 3"}},
		{"target: knocks to the target open",
			[]Door{{Name: "t", Sequence: seq("7000", "8000"), Timeout: 5 * time.Second, Target: target}},
			[]k{syn(0, srcA, 7000).to(target), syn(ms(1), srcA, 8000).to(target)},
			[]string{"open t 192.0.2.1 2"}},
		{"target: knocks to the interface address do not",
			[]Door{{Name: "t", Sequence: seq("7000", "8000"), Timeout: 5 * time.Second, Target: target}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000)},
			nil},
		{"knocks to a foreign address are invisible", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000).to(netip.MustParseAddr("10.0.0.7")), syn(ms(2), srcA, 8000), syn(ms(3), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"ipv6 knock", []Door{base()},
			[]k{syn(0, srcA6, 7000).to(local6), syn(ms(1), srcA6, 8000).to(local6), syn(ms(2), srcA6, 9000).to(local6)},
			[]string{"open base 2001:db8::1 3"}},
		// An IPv4-mapped source is IPv6 traffic: it shares no attempt with
		// the IPv4 address, and opens as itself.
		{"ipv4-mapped source is ipv6 traffic", []Door{base()},
			[]k{syn(0, mapped(srcA), 7000).to(local6), syn(ms(1), srcA, 8000), syn(ms(2), srcA, 9000),
				syn(ms(3), mapped(srcB), 7000).to(local6), syn(ms(4), mapped(srcB), 8000).to(local6), syn(ms(5), mapped(srcB), 9000).to(local6)},
			[]string{"open base ::ffff:192.0.2.2 3"}},
		// An IPv4-mapped destination in an IPv6 header is not the IPv4
		// local address.
		{"ipv4-mapped destination is not the ipv4 address", []Door{base()},
			[]k{syn(0, srcA6, 7000).to(mapped(local)), syn(ms(1), srcA6, 8000).to(mapped(local)), syn(ms(2), srcA6, 9000).to(mapped(local))},
			nil},
		{"one-element door fires on its first packet",
			[]Door{{Name: "one", Sequence: seq("4000:udp"), Timeout: time.Second}},
			[]k{udp(0, srcA, 4000), udp(ms(1), srcA, 4000)},
			[]string{"open one 192.0.2.1 1", "open one 192.0.2.1 1"}},
		{"a wrong knock resets and does not start a new attempt", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 9000), syn(ms(2), srcA, 7000), syn(ms(3), srcA, 8000), syn(ms(4), srcA, 9000)},
			// 9000 kills the attempt and is not a first knock; 7000 then starts afresh.
			[]string{"open base 192.0.2.1 3"}},
		{"the wrong knock itself does not start an attempt", []Door{base(), {Name: "nine", Sequence: seq("9000", "7000"), Timeout: time.Second, Flags: knock.FlagMask{Set: knock.SYN}}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 9000), syn(ms(2), srcA, 7000)},
			nil},
		// Difference 2: knockd resets on a repeat, so 7000,7000,8000,9000 fails there.
		{"a repeat of the previous stage is ignored", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 7000), syn(ms(2), srcA, 8000), syn(ms(3), srcA, 8000), syn(ms(4), srcA, 9000)},
			[]string{"open base 192.0.2.1 3"}},
		{"a repeated element in the sequence still advances",
			[]Door{{Name: "rep", Sequence: seq("7000", "7000", "8000"), Timeout: time.Second}},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 7000), syn(ms(2), srcA, 7000), syn(ms(3), srcA, 8000)},
			[]string{"open rep 192.0.2.1 3"}},
		{"an older stage than the previous one resets", []Door{base()},
			[]k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000), syn(ms(2), srcA, 7000), syn(ms(3), srcA, 9000)},
			nil},
		// Difference 3: sub-second timeouts from the first knock.
		{"sub-second timeout, in time",
			[]Door{{Name: "fast", Sequence: seq("7000", "8000"), Timeout: ms(500)}},
			[]k{syn(ms(900), srcA, 7000), syn(ms(1399), srcA, 8000)},
			[]string{"open fast 192.0.2.1 2"}},
		{"sub-second timeout, late",
			[]Door{{Name: "fast", Sequence: seq("7000", "8000"), Timeout: ms(500)}},
			[]k{syn(ms(900), srcA, 7000), syn(ms(1400), srcA, 8000)},
			nil},
		{"disabled door matches nothing",
			[]Door{{Name: "off", Sequence: seq("7000"), Timeout: time.Second, Disabled: true}},
			[]k{syn(0, srcA, 7000)},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newM(tt.doors...)
			got := opens(run(m, tt.pkts))
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("opens = %q, want %q\nall events: %q", got, tt.want, run(newM(tt.doors...), tt.pkts))
			}
		})
	}
}

func TestEventsAndTimeouts(t *testing.T) {
	m := newM(base())
	got := runUntil(m, []k{syn(0, srcA, 7000), syn(ms(10), srcA, 8000)}, 5*time.Second)
	want := []string{"stage base 192.0.2.1 1", "stage base 192.0.2.1 2", "timeout base 192.0.2.1 2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
	if m.Stats().Attempts != 0 {
		t.Errorf("attempts left: %d", m.Stats().Attempts)
	}
	if _, ok := m.NextDeadline(); ok {
		t.Error("deadline with no attempts")
	}
}

func TestExpireIsEagerAndOrdered(t *testing.T) {
	slow := Door{Name: "slow", Sequence: seq("1000", "1001"), Timeout: 10 * time.Second}
	fast := Door{Name: "fast", Sequence: seq("2000", "2001"), Timeout: time.Second}
	m := newM(slow, fast)
	run(m, []k{syn(0, srcA, 1000), syn(ms(100), srcB, 2000)})
	dl, ok := m.NextDeadline()
	if !ok || !dl.Equal(t0.Add(ms(1100))) {
		t.Fatalf("next deadline %v %v, want t0+1.1s", dl, ok)
	}
	if evs := m.Expire(t0.Add(ms(1099))); len(evs) != 0 {
		t.Fatalf("expired early: %v", evs)
	}
	evs := m.Expire(t0.Add(ms(1100)))
	if len(evs) != 1 || evs[0].Kind != Timeout || evs[0].Src != srcB {
		t.Fatalf("expire at deadline: %v", evs)
	}
	dl, _ = m.NextDeadline()
	if !dl.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("next deadline %v", dl)
	}
}

func TestFloodCannotEvictAdvancedKnocker(t *testing.T) {
	m := New([]Door{base()}, 100)
	m.SetLocal([]netip.Addr{local})
	run(m, []k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000)})
	// 10,000 spoofed first knocks through a table of 100.
	for i := 0; i < 10000; i++ {
		src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		m.Observe(knock.Packet{Src: src, Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN}, t0.Add(ms(2)))
		if m.Stats().Attempts > 100 {
			t.Fatalf("attempts %d exceed MaxAttempts", m.Stats().Attempts)
		}
	}
	got := opens(run(m, []k{syn(ms(3), srcA, 9000)}))
	if len(got) != 1 {
		t.Fatalf("real knocker did not get in: %v", got)
	}
	if s := m.Stats(); s.Evictions != 10000-99 {
		t.Errorf("evictions %d, want %d", s.Evictions, 10000-99)
	}
}

func TestEvictionOrderWithinAClass(t *testing.T) {
	m := New([]Door{base()}, 2)
	m.SetLocal([]netip.Addr{local})
	run(m, []k{syn(0, srcA, 7000), syn(ms(1), srcB, 7000)})
	c := netip.MustParseAddr("192.0.2.3")
	run(m, []k{syn(ms(2), c, 7000)})
	if s := m.Stats(); s.Evictions != 1 || s.Attempts != 2 {
		t.Fatalf("stats %+v, want one eviction and two attempts", s)
	}
	// A, the oldest, was evicted: its 8000 starts nothing. B and C complete.
	got := opens(run(m, []k{syn(ms(3), srcA, 8000), syn(ms(4), srcA, 9000), syn(ms(5), srcB, 8000), syn(ms(6), srcB, 9000), syn(ms(7), c, 8000), syn(ms(8), c, 9000)}))
	if strings.Join(got, "|") != "open base 192.0.2.2 3|open base 192.0.2.3 3" {
		t.Errorf("opens %q", got)
	}
}

func TestSetDoorsKeepsUnchangedAttempts(t *testing.T) {
	other := Door{Name: "other", Sequence: seq("1000", "1001"), Timeout: 5 * time.Second}
	m := newM(base(), other)
	run(m, []k{syn(0, srcA, 7000), syn(ms(1), srcA, 8000), syn(ms(2), srcB, 1000)})
	// Reload: base unchanged but moved and given a longer timeout;
	// "other" got a new sequence.
	b := base()
	b.Timeout = 20 * time.Second
	m.SetDoors([]Door{{Name: "other", Sequence: seq("1000", "1002"), Timeout: 5 * time.Second}, b})
	if n := m.Stats().Attempts; n != 1 {
		t.Fatalf("attempts after reload = %d, want 1", n)
	}
	got := opens(run(m, []k{syn(10*time.Second, srcA, 9000), syn(ms(10001), srcB, 1002)}))
	if strings.Join(got, "|") != "open base 192.0.2.1 3" {
		t.Errorf("opens %q", got)
	}
}

// Events of one packet come in the order its attempts started (knockd's
// attempt list), also after reloads that renumber the doors twice: the
// second reload used to order attempts a packet started together by
// their door indexes of the first, which were no longer theirs.
func TestSetDoorsKeepsStartOrderOverReloads(t *testing.T) {
	a := Door{Name: "a", Sequence: seq("7000", "8000"), Timeout: 5 * time.Second}
	b := Door{Name: "b", Sequence: seq("7000", "8001"), Timeout: 5 * time.Second}
	c := Door{Name: "c", Sequence: seq("1", "2"), Timeout: 5 * time.Second}
	m := newM(a, b, c)
	run(m, []k{syn(0, srcA, 7000)}) // starts a, then b
	m.SetDoors([]Door{c, b, a})     // b is 1, a is 2
	m.SetDoors([]Door{c, b, a, {Name: "d", Sequence: seq("3"), Timeout: time.Second}})
	got := run(m, []k{syn(ms(1), srcA, 1)}) // resets both, in start order
	if want := "reset a 192.0.2.1 1|reset b 192.0.2.1 1"; strings.Join(got, "|") != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestSetSequenceDropsThatDoorsAttempts(t *testing.T) {
	m := newM(base())
	run(m, []k{syn(0, srcA, 7000)})
	m.SetSequence(0, seq("1111"))
	if n := m.Stats().Attempts; n != 0 {
		t.Fatalf("attempts %d", n)
	}
	if got := opens(run(m, []k{syn(ms(1), srcA, 1111)})); len(got) != 1 {
		t.Errorf("new sequence does not open: %v", got)
	}
	m.SetSequence(0, nil)
	if got := run(m, []k{syn(ms(2), srcA, 1111)}); len(got) != 0 {
		t.Errorf("disabled door still matches: %v", got)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m := New([]Door{base()}, 1024)
	m.SetLocal([]netip.Addr{local})
	ports := []uint16{7000, 8000, 9000}
	i := 0
	now := t0
	warm := func() {
		src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8 & 7), byte(i)})
		m.Observe(knock.Packet{Src: src, Dst: local, Port: ports[i%3], Proto: knock.TCP, Flags: knock.SYN}, now)
		i++
		now = now.Add(time.Microsecond)
	}
	for j := 0; j < 10000; j++ {
		warm()
	}
	if a := testing.AllocsPerRun(10000, warm); a != 0 {
		t.Errorf("Observe allocates %.2f times per packet", a)
	}
}
