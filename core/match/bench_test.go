package match

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// The matcher's cost per packet for the traffic mixes it meets: real
// sequences, noise the capture filter let through, and a spoofed flood
// of first knocks that keeps the attempt table full and evicting.

func benchDoors() []Door {
	return []Door{
		base(),
		{Name: "udp", Sequence: seq("5000:udp", "5001:udp", "5002:udp"), Timeout: 5 * time.Second},
		{Name: "alt", Sequence: seq("7000", "8000", "9001"), Timeout: 10 * time.Second, Flags: knock.FlagMask{Set: knock.SYN}},
	}
}

func BenchmarkObserve(b *testing.B) {
	cases := []struct {
		name string
		max  int
		pkt  func(i int) knock.Packet
	}{
		{"sequences", 65536, func(i int) knock.Packet {
			src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 10), byte(i >> 2)})
			return knock.Packet{Src: src, Dst: local, Port: []uint16{7000, 8000, 9000, 9000}[i&3], Proto: knock.TCP, Flags: knock.SYN}
		}},
		{"flood-first-knocks", 65536, func(i int) knock.Packet {
			src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			return knock.Packet{Src: src, Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN}
		}},
		{"flood-wrong-stage", 65536, func(i int) knock.Packet {
			src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			return knock.Packet{Src: src, Dst: local, Port: 9000, Proto: knock.TCP, Flags: knock.SYN}
		}},
		{"ipv6-flood-first-knocks", 65536, func(i int) knock.Packet {
			var a [16]byte
			a[0], a[1], a[13], a[14], a[15] = 0x20, 0x01, byte(i>>16), byte(i>>8), byte(i)
			return knock.Packet{Src: netip.AddrFrom16(a), Dst: local6, Port: 7000, Proto: knock.TCP, Flags: knock.SYN}
		}},
		{"invisible", 65536, func(i int) knock.Packet {
			return knock.Packet{Src: srcA, Dst: local, Port: 22, Proto: knock.TCP, Flags: knock.SYN}
		}},
		{"ipv6-sequences", 65536, func(i int) knock.Packet {
			var a [16]byte
			a[0], a[1], a[14], a[15] = 0x20, 0x01, byte(i>>10), byte(i>>2)
			return knock.Packet{Src: netip.AddrFrom16(a), Dst: local6, Port: []uint16{7000, 8000, 9000, 9000}[i&3], Proto: knock.TCP, Flags: knock.SYN}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := New(benchDoors(), c.max)
			m.SetLocal([]netip.Addr{local, local6})
			pkts := make([]knock.Packet, 1<<16)
			for i := range pkts {
				pkts[i] = c.pkt(i)
			}
			now := time.Now()
			// Warm the table to its working size.
			for i := 0; i < 1<<17; i++ {
				m.Observe(pkts[i&(1<<16-1)], now)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.Observe(pkts[i&(1<<16-1)], now)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpkt/s")
		})
	}
}

// bigDoors returns n doors as a large generated config has them: every
// door its own name and three-knock sequence, a handful of timeouts.
func bigDoors(n int) []Door {
	doors := make([]Door, n)
	for i := range doors {
		p := uint16(1024 + i%60000)
		doors[i] = Door{Name: fmt.Sprint("door", i), Sequence: []knock.Port{{Num: p, Proto: knock.TCP}, {Num: p + 1, Proto: knock.UDP}, {Num: 9000, Proto: knock.TCP}},
			Timeout: time.Duration(5+i%7) * time.Second}
	}
	return doors
}

// A reload must be linear in the doors: 100k doors in well under a
// second (issue 11; it was quadratic, 23 s).
func BenchmarkSetDoors(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			doors := bigDoors(n)
			m := New(doors, 65536)
			m.SetLocal([]netip.Addr{local})
			now := time.Now()
			// Attempts in progress on many doors, kept across the reload.
			for i := 0; i < 10000; i++ {
				src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
				m.Observe(knock.Packet{Src: src, Dst: local, Port: doors[i%n].Sequence[0].Num, Proto: knock.TCP}, now)
			}
			next := slices.Clone(doors)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next[i%n].Timeout++ // a changed door among unchanged ones
				m.SetDoors(next)
			}
		})
	}
}

// A one-time sequence used: one door's sequence changes.
func BenchmarkSetSequence(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := New(bigDoors(n), 65536)
			m.SetLocal([]netip.Addr{local})
			seqs := [][]knock.Port{seq("1111", "2222"), seq("3333", "4444:udp")}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.SetSequence(i%n, seqs[i&1])
			}
		})
	}
}
