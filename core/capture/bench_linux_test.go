package capture

import (
	"context"
	"math/rand"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// Benchmarks of what a frame that is not a knock costs. They need root
// (namespaces, eBPF) and print tables through the metrics:
//
//	go test -run '^$' -bench 'EBPFFilter|CaptureUnrelated' -benchtime 2000000x ./core/capture/

// benchSpecs are a small config (one door) and the 10,000 knock
// ports on 1,000+1,000 addresses, both with the bench pair's server
// addresses.
func benchSpecs() []struct {
	name string
	spec FilterSpec
} {
	rng := rand.New(rand.NewSource(1))
	big := scaleSpec(scaleCases[1], rng)
	big.Dsts = append(big.Dsts, s4, s6)
	small := FilterSpec{Dsts: []netip.Addr{s4, s6},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.TCP}, {Num: 9000, Proto: knock.TCP}}}
	return []struct {
		name string
		spec FilterSpec
	}{{"3 ports", small}, {"10000 ports on 2000 addresses", big}}
}

// unrelatedPackets are n packets to spec's addresses on ports it does
// not name, half TCP SYNs, half UDP, IPv4 and IPv6.
func unrelatedPackets(spec FilterSpec, n int) []knock.Packet {
	set := newSpecSet(mustNormalizeNoTB(spec))
	rng := rand.New(rand.NewSource(2))
	var out []knock.Packet
	for len(out) < n {
		dst := spec.Dsts[rng.Intn(len(spec.Dsts))]
		src := c4
		if dst.Is6() {
			src = c6
		}
		p := knock.Packet{Src: src, Dst: dst, Port: uint16(1 + rng.Intn(65535)), Proto: knock.TCP, Flags: knock.SYN}
		if len(out)%2 == 1 {
			p.Proto, p.Flags = knock.UDP, 0
		}
		if !set.has(p) {
			out = append(out, p)
		}
	}
	return out
}

func mustNormalizeNoTB(spec FilterSpec) normSpec {
	n, err := normalize(spec)
	if err != nil {
		panic(err)
	}
	return n
}

// BenchmarkEBPFFilter is the eBPF filter's own cost per frame, run by the
// kernel (BPF_PROG_TEST_RUN runs it b.N times on one frame and times the
// runs alone): a frame it drops, for each spec.
func BenchmarkEBPFFilter(b *testing.B) {
	for _, sc := range benchSpecs() {
		pkts := unrelatedPackets(sc.spec, 2)
		for _, k := range []struct {
			name string
			pkt  knock.Packet
		}{{"unrelated IPv4 TCP", pkts[0]}, {"unrelated IPv6 UDP", firstV6(pkts)}} {
			b.Run(sc.name+"/"+k.name, func(b *testing.B) {
				tf := loadTestFilter(b, sc.spec, LinkEthernet)
				in := append(append([]byte(nil), testRunHeader...), packetFrame(b, LinkEthernet, k.pkt)...)
				ret, per, err := tf.f.prog.Benchmark(in, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				if ret != 0 {
					b.Fatalf("filter kept an unrelated frame (%d)", ret)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "kernel-ns/frame")
			})
		}
	}
}

func firstV6(pkts []knock.Packet) knock.Packet {
	for _, p := range pkts {
		if p.Dst.Is6() {
			return p
		}
	}
	return unrelatedPackets(FilterSpec{Dsts: []netip.Addr{s6}, Ports: []knock.Port{{Num: 1, Proto: knock.UDP}}}, 1)[0]
}

// BenchmarkCaptureUnrelated sends b.N frames that are not knocks through
// a veth (sendmmsg, 64 a batch) to a namespace where a capture runs. The
// frames are addressed to another MAC, so after the packet sockets the
// receiving stack drops them at once: what is left is the cost of the
// capture. The veth hands each frame to the receive path, packet socket
// filters included, on the sending thread, so ns/op is the sender's time
// per frame: compare it with the "no capture" row for what a capture
// adds in the kernel. user-frames/op is the share of frames the kernel
// filter let through to the reader; cpu-ns/op is the process's CPU time
// (sender, reader and user-space check) per frame.
func BenchmarkCaptureUnrelated(b *testing.B) {
	netnstest.RequireRoot(b)
	p := netnstest.NewPair(b)
	var tx *rawsend.Bulk
	var mac net.HardwareAddr
	// Not the server's MAC: PACKET_OTHERHOST, dropped by IP at once.
	mac = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	if err := p.Client.Do(func() (err error) {
		tx, err = rawsend.OpenBulk(netnstest.ClientIf, 64)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	for _, sc := range benchSpecs() {
		// Frames grouped by family: one sendmmsg carries one EtherType.
		var v4, v6 [][]byte
		for _, pkt := range unrelatedPackets(sc.spec, 4096) {
			s := syn(pkt.Src, pkt.Dst, pkt.Port)
			if pkt.Proto == knock.UDP {
				s = udp(pkt.Src, pkt.Dst, pkt.Port)
			}
			s.SrcMAC, s.DstMAC = tx.MAC(), mac
			f := ethFrame(b, s)
			if pkt.Dst.Is4() {
				v4 = append(v4, f)
			} else {
				v6 = append(v6, f)
			}
		}
		v4, v6 = v4[:len(v4)/64*64], v6[:len(v6)/64*64]
		for _, kind := range []FilterKind{0, FilterEBPF, FilterClassic} {
			name := sc.name + "/" + kind.String()
			if kind == 0 {
				if sc.name != benchSpecs()[0].name {
					continue
				}
				name = "no capture"
			}
			b.Run(name, func(b *testing.B) {
				var h *Handle
				var read func() uint64
				if kind != 0 {
					if err := p.Server.Do(func() (err error) {
						h, err = open(netnstest.ServerIf, sc.spec, kind == FilterEBPF)
						return err
					}); err != nil {
						b.Fatal(err)
					}
					if st := h.Stats(); st.Filter != kind {
						b.Fatalf("filter %s, want %s (%v)", st.Filter, kind, st.EBPFErr)
					}
					done := make(chan error, 1)
					go func() { done <- h.Run(context.Background(), func(knock.Packet) {}, nil) }()
					defer func() { h.Close(); <-done }()
					read = func() uint64 { return h.Stats().Read }
					time.Sleep(10 * time.Millisecond) // the reader drains what came before the filter
				}
				r0 := uint64(0)
				if read != nil {
					r0 = read()
				}
				cpu0 := cpuTime()
				b.ResetTimer()
				sent := 0
				for sent < b.N {
					batch := v4
					if (sent/64)%2 == 1 {
						batch = v6
					}
					off := (sent / 128 * 64) % len(batch)
					n := min(64, b.N-sent)
					k, err := tx.SendBatch(batch[off : off+n])
					if err != nil {
						b.Fatal(err)
					}
					sent += k
				}
				b.StopTimer()
				if read != nil {
					// Let the reader catch up before counting.
					time.Sleep(20 * time.Millisecond)
					b.ReportMetric(float64(read()-r0)/float64(b.N), "user-frames/op")
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the process's user+system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
