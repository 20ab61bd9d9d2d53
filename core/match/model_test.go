package match

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// model is a deliberately naive matcher: a slice of attempts scanned per
// packet, written straight from the rules in the package doc. The real
// Matcher must produce the same events on any packet stream.
type model struct {
	doors    []Door
	local    map[netip.Addr]bool
	host     map[netip.Addr]bool // the host's other addresses
	attempts []modelAttempt
}

type modelAttempt struct {
	src      netip.Addr
	door     int
	stage    int
	start    time.Time
	deadline time.Time
}

// ignored is the rule from the package doc, written out.
func (md *model) ignored(src netip.Addr) bool {
	u := src.Unmap()
	return u.IsLoopback() || u.IsUnspecified() || u.IsMulticast() || u.IsLinkLocalUnicast() ||
		u == netip.MustParseAddr("255.255.255.255") || (u.Is4() && u.As4()[0] == 0) || md.local[u] || md.host[u]
}

// setSequence drops the door's attempts and gives it seq.
func (md *model) setSequence(door int, seq []knock.Port) {
	var keep []modelAttempt
	for _, a := range md.attempts {
		if a.door != door {
			keep = append(keep, a)
		}
	}
	md.attempts = keep
	md.doors[door].Sequence = seq
	md.doors[door].Disabled = len(seq) == 0
}

// setDoors keeps the attempts of doors that kept their name, sequence
// and target, with the new door's timeout from their start.
func (md *model) setDoors(doors []Door) {
	used := make([]bool, len(doors))
	remap := make([]int, len(md.doors))
	for i, od := range md.doors {
		remap[i] = -1
		for j, nd := range doors {
			if !used[j] && sameDoor(od, nd) {
				remap[i], used[j] = j, true
				break
			}
		}
	}
	var keep []modelAttempt
	for _, a := range md.attempts {
		if j := remap[a.door]; j >= 0 {
			a.door = j
			a.deadline = a.start.Add(doors[j].Timeout)
			keep = append(keep, a)
		}
	}
	md.attempts = keep
	md.doors = append([]Door(nil), doors...)
}

func (md *model) accepts(d Door, dst netip.Addr) bool {
	if d.Target.IsValid() {
		return d.Target == dst
	}
	return md.local[dst]
}

func (md *model) expire(now time.Time) []string {
	var out []string
	// Expiry order: by deadline, then by start order (stable).
	for {
		best := -1
		for i, a := range md.attempts {
			if !a.deadline.After(now) && (best < 0 || a.deadline.Before(md.attempts[best].deadline)) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		a := md.attempts[best]
		out = append(out, fmt.Sprintf("timeout %d %s %d", a.door, a.src, a.stage))
		md.attempts = append(md.attempts[:best], md.attempts[best+1:]...)
	}
}

func (md *model) observe(p knock.Packet, now time.Time) []string {
	out := md.expire(now)
	if md.ignored(p.Src) {
		return out
	}
	key := knock.Port{Num: p.Port, Proto: p.Proto}
	flagsOK := func(d Door) bool { return p.Proto != knock.TCP || d.Flags.Match(p.Flags) }
	visible := false
	for _, d := range md.doors {
		if !d.Disabled && containsPort(d.Sequence, key) && md.accepts(d, p.Dst) && flagsOK(d) {
			visible = true
		}
	}
	if !visible {
		return out
	}
	found := false
	var keep []modelAttempt
	for _, a := range md.attempts {
		d := md.doors[a.door]
		if a.src != p.Src || !md.accepts(d, p.Dst) {
			keep = append(keep, a)
			continue
		}
		found = true
		switch {
		case !flagsOK(d):
			keep = append(keep, a)
		case d.Sequence[a.stage] == key:
			a.stage++
			out = append(out, fmt.Sprintf("stage %d %s %d", a.door, a.src, a.stage))
			if a.stage == len(d.Sequence) {
				out = append(out, fmt.Sprintf("open %d %s %d", a.door, a.src, a.stage))
			} else {
				keep = append(keep, a)
			}
		case a.stage > 0 && d.Sequence[a.stage-1] == key:
			keep = append(keep, a)
		default:
			out = append(out, fmt.Sprintf("reset %d %s %d", a.door, a.src, a.stage))
		}
	}
	md.attempts = keep
	if found {
		return out
	}
	for i, d := range md.doors {
		if d.Disabled || d.Sequence[0] != key || !md.accepts(d, p.Dst) || !flagsOK(d) {
			continue
		}
		out = append(out, fmt.Sprintf("stage %d %s 1", i, p.Src))
		if len(d.Sequence) == 1 {
			out = append(out, fmt.Sprintf("open %d %s 1", i, p.Src))
			continue
		}
		md.attempts = append(md.attempts, modelAttempt{src: p.Src, door: i, stage: 1, start: now, deadline: now.Add(d.Timeout)})
	}
	return out
}

func render(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %d %s %d", e.Kind, e.Door, e.Src, e.Stage))
	}
	return out
}

func TestMatchesModelOnRandomStreams(t *testing.T) {
	ports := []knock.Port{{Num: 1, Proto: knock.TCP}, {Num: 2, Proto: knock.TCP}, {Num: 3, Proto: knock.TCP}, {Num: 2, Proto: knock.UDP}, {Num: 4, Proto: knock.UDP}, {Num: 9, Proto: knock.TCP}}
	srcs := []netip.Addr{srcA, srcB, srcA6}
	dsts := []netip.Addr{local, local6, target, netip.MustParseAddr("10.0.0.50")}
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 300; round++ {
		var doors []Door
		for d := 0; d < 1+rng.Intn(4); d++ {
			n := 1 + rng.Intn(4)
			var s []knock.Port
			for j := 0; j < n; j++ {
				s = append(s, ports[rng.Intn(len(ports)-1)])
			}
			door := Door{Name: fmt.Sprint(d), Sequence: s, Timeout: time.Duration(1+rng.Intn(3)) * 100 * time.Millisecond}
			if rng.Intn(3) == 0 {
				door.Flags = knock.FlagMask{Set: knock.SYN}
			}
			if rng.Intn(3) == 0 {
				door.Flags.Clear = knock.ACK
			}
			if rng.Intn(5) == 0 {
				door.Target = target
			}
			doors = append(doors, door)
		}
		m := New(doors, 1<<20)
		m.SetLocal([]netip.Addr{local, local6})
		md := &model{doors: doors, local: map[netip.Addr]bool{local: true, local6: true}}
		now := t0
		var log []string
		for step := 0; step < 200; step++ {
			now = now.Add(time.Duration(rng.Intn(60)) * time.Millisecond)
			if rng.Intn(10) == 0 {
				got, want := render(m.Expire(now)), md.expire(now)
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("round %d step %d expire: got %q want %q\ndoors %+v\nlog %q", round, step, got, want, doors, log)
				}
				continue
			}
			p := ports[rng.Intn(len(ports))]
			pkt := knock.Packet{Src: srcs[rng.Intn(len(srcs))], Dst: dsts[rng.Intn(len(dsts))], Port: p.Num, Proto: p.Proto}
			if p.Proto == knock.TCP {
				pkt.Flags = []uint8{knock.SYN, knock.SYN | knock.ACK, knock.ACK}[rng.Intn(3)]
			}
			log = append(log, pkt.String())
			got, want := render(m.Observe(pkt, now)), md.observe(pkt, now)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("round %d step %d %v: got %q want %q\ndoors %+v\nlog %q", round, step, pkt, got, want, doors, log)
			}
			if m.Stats().Attempts != len(md.attempts) {
				t.Fatalf("round %d step %d: %d attempts, model has %d", round, step, m.Stats().Attempts, len(md.attempts))
			}
		}
	}
}

// Reloads, one-time rotations, many timeout classes and sources that
// never count, against the model. Time advances with every step: two
// packets at one instant could leave attempts whose relative age a
// reload cannot tell apart, which no real clock produces.
func TestMatchesModelAcrossReloads(t *testing.T) {
	ports := []knock.Port{{Num: 1, Proto: knock.TCP}, {Num: 2, Proto: knock.TCP}, {Num: 3, Proto: knock.TCP}, {Num: 2, Proto: knock.UDP}, {Num: 4, Proto: knock.UDP}, {Num: 9, Proto: knock.TCP}}
	host := netip.MustParseAddr("10.0.0.77")
	srcs := []netip.Addr{srcA, srcB, srcA6, netip.AddrFrom16(srcA.As16()), netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("ff02::1"), netip.MustParseAddr("fe80::1"), local, host, netip.MustParseAddr("::ffff:127.0.0.1")}
	dsts := []netip.Addr{local, local6, target}
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	randDoor := func(name string) Door {
		n := 1 + rng.Intn(4)
		var s []knock.Port
		for j := 0; j < n; j++ {
			s = append(s, ports[rng.Intn(len(ports)-1)])
		}
		d := Door{Name: name, Sequence: s, Timeout: time.Duration(1+rng.Intn(40)) * 10 * time.Millisecond}
		if rng.Intn(3) == 0 {
			d.Flags = knock.FlagMask{Set: knock.SYN}
		}
		if rng.Intn(5) == 0 {
			d.Target = target
		}
		return d
	}
	for round := 0; round < 300; round++ {
		var doors []Door
		for d := 0; d < 1+rng.Intn(6); d++ {
			doors = append(doors, randDoor(fmt.Sprint(d)))
		}
		m := New(doors, 1<<20)
		m.SetLocal([]netip.Addr{local, local6})
		m.SetHost([]netip.Addr{host})
		md := &model{doors: append([]Door(nil), doors...), local: map[netip.Addr]bool{local: true, local6: true}, host: map[netip.Addr]bool{host: true}}
		now := t0
		var log []string
		for step := 0; step < 300; step++ {
			now = now.Add(time.Duration(1+rng.Intn(30)) * time.Millisecond)
			switch r := rng.Intn(20); {
			case r == 0:
				// A reload: doors shuffled, some changed, some new.
				var next []Door
				for _, d := range md.doors {
					switch rng.Intn(4) {
					case 0:
						next = append(next, randDoor(d.Name))
					case 1:
						d.Timeout = time.Duration(1+rng.Intn(40)) * 10 * time.Millisecond
						next = append(next, d)
					case 2:
					default:
						next = append(next, d)
					}
				}
				if rng.Intn(2) == 0 {
					next = append(next, randDoor(fmt.Sprint("new", step)))
				}
				rng.Shuffle(len(next), func(i, j int) { next[i], next[j] = next[j], next[i] })
				log = append(log, fmt.Sprintf("reload %+v", next))
				m.SetDoors(next)
				md.setDoors(next)
			case r == 1 && len(md.doors) > 0:
				door := rng.Intn(len(md.doors))
				var seq []knock.Port
				if rng.Intn(4) > 0 {
					seq = randDoor("").Sequence
				}
				log = append(log, fmt.Sprintf("door %d sequence %v", door, seq))
				m.SetSequence(door, seq)
				md.setSequence(door, seq)
			case r == 2:
				got, want := render(m.Expire(now)), md.expire(now)
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("seed %d round %d step %d expire: got %q want %q\nlog %q", seed, round, step, got, want, log)
				}
			default:
				p := ports[rng.Intn(len(ports))]
				pkt := knock.Packet{Src: srcs[rng.Intn(len(srcs))], Dst: dsts[rng.Intn(len(dsts))], Port: p.Num, Proto: p.Proto}
				if p.Proto == knock.TCP {
					pkt.Flags = []uint8{knock.SYN, knock.SYN | knock.ACK, knock.ACK}[rng.Intn(3)]
				}
				log = append(log, pkt.String())
				got, want := render(m.Observe(pkt, now)), md.observe(pkt, now)
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("seed %d round %d step %d %v: got %q want %q\nlog %q", seed, round, step, pkt, got, want, log)
				}
			}
			if m.Stats().Attempts != len(md.attempts) {
				t.Fatalf("seed %d round %d step %d: %d attempts, model has %d\nlog %q", seed, round, step, m.Stats().Attempts, len(md.attempts), log)
			}
			if dl, ok := m.NextDeadline(); ok != (len(md.attempts) > 0) || ok && !dl.Equal(md.next()) {
				t.Fatalf("seed %d round %d step %d: next deadline %v %v, model %v", seed, round, step, dl, ok, md.next())
			}
		}
	}
}

// next is the earliest deadline.
func (md *model) next() time.Time {
	var best time.Time
	for _, a := range md.attempts {
		if best.IsZero() || a.deadline.Before(best) {
			best = a.deadline
		}
	}
	return best
}

// testSeed is a random seed, printed, that SESAME_TEST_SEED overrides.
func testSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("SESAME_TEST_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SESAME_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (SESAME_TEST_SEED=%d replays it)", seed, seed)
	return seed
}
