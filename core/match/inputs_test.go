package match

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// manyClassDoors returns n doors, each with its own timeout (so n timeout
// classes) and its own first knock port, all finishing on 9000.
func manyClassDoors(n int) []Door {
	doors := make([]Door, n)
	for i := range doors {
		doors[i] = Door{
			Name:     fmt.Sprint("d", i),
			Sequence: []knock.Port{{Num: uint16(10000 + i), Proto: knock.TCP}, {Num: 9000, Proto: knock.TCP}},
			Timeout:  time.Second + time.Duration(i)*time.Millisecond,
		}
	}
	return doors
}

// More than 32,767 distinct timeouts once wrapped an int16 class index:
// the first knock on a door past it panicked the engine.
func TestMoreTimeoutClassesThanInt16(t *testing.T) {
	const n = 33000
	m := New(manyClassDoors(n), 1000)
	m.SetLocal([]netip.Addr{local})
	last := n - 1
	got := run(m, []k{syn(0, srcA, uint16(10000+last)), syn(ms(1), srcA, 9000)})
	if want := fmt.Sprintf("open d%d 192.0.2.1 2", last); !strings.Contains(strings.Join(got, "|"), want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	// Attempts on classes far apart expire in deadline order: the door
	// with the longest timeout started first and expires last.
	run(m, []k{syn(ms(10), srcA, uint16(10000+last)), syn(ms(20), srcB, 10000+40000-n), syn(ms(30), srcA6.Prev(), 10005).to(local)})
	evs := runUntil(m, nil, time.Hour)
	want := []string{"timeout d5 2001:db8:: 1", "timeout d7000 192.0.2.2 1", fmt.Sprintf("timeout d%d 192.0.2.1 1", last)}
	if strings.Join(evs, "|") != strings.Join(want, "|") {
		t.Errorf("timeouts %q, want %q", evs, want)
	}
}

func TestIgnoredSourcesNeverCount(t *testing.T) {
	own := netip.MustParseAddr("10.9.9.9")     // on an interface not captured on
	bcast := netip.MustParseAddr("10.0.0.255") // a local subnet's broadcast
	for _, src := range []string{
		"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "0.1.2.3", "::",
		"224.0.0.1", "239.1.2.3", "ff02::1", "ff0e::1", "ff01::1", "255.255.255.255",
		"169.254.1.1", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.0.1",
		local.String(), local6.String(), "::ffff:" + local.String(), own.String(), bcast.String(),
	} {
		t.Run(src, func(t *testing.T) {
			m := newM(base())
			m.SetHost([]netip.Addr{own, bcast})
			a := netip.MustParseAddr(src)
			dst := local
			if a.Is6() {
				dst = local6
			}
			if got := run(m, []k{syn(0, a, 7000).to(dst), syn(ms(1), a, 8000).to(dst), syn(ms(2), a, 9000).to(dst)}); len(got) != 0 {
				t.Errorf("events %q, want none", got)
			}
			if s := m.Stats(); s.Ignored != 3 || s.Attempts != 0 {
				t.Errorf("stats %+v, want 3 ignored and no attempts", s)
			}
			if !IgnoredSource(a) && a != local && a != local6 && a.Unmap() != local && a != own && a != bcast {
				t.Errorf("IgnoredSource(%s) = false", a)
			}
		})
	}
	// A source that is none of those still opens, and SetHost replaces the
	// host's addresses; a source that becomes the host's loses its attempts.
	m := newM(base())
	run(m, []k{syn(0, srcA, 7000), syn(0, mapped(srcA), 7000).to(local6), syn(0, srcB, 7000)})
	m.SetHost([]netip.Addr{srcA})
	if n := m.Stats().Attempts; n != 1 {
		t.Fatalf("%d attempts, want srcB's only", n)
	}
	if got := run(m, []k{syn(0, srcA, 7000)}); len(got) != 0 {
		t.Fatalf("a host address counted: %q", got)
	}
	m.SetHost(nil)
	if got := opens(run(m, []k{syn(ms(1), srcA, 7000), syn(ms(2), srcA, 8000), syn(ms(3), srcA, 9000)})); len(got) != 1 {
		t.Errorf("opens %q after the address left the host", got)
	}
}
