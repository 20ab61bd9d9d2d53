package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/sshknock"
	"github.com/sesame-knock/sesame/internal/fwknoptest"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

// BenchmarkSPAFlood is the flood figure of issues 13 and 14: real SPA
// packets sent to sesamed (nftables) while the client namespace floods
// its SPA port from spoofed sources: fwknop garbage at 20,000 and
// 100,000 packets per second, forged SSH-signed knocks (naming a real
// key or unknown ones) at 20,000; and Debian's fwknopd 2.6.10 under the
// same fwknop garbage, side by side. The -quiet cases (one batch of 32
// packets, then nothing) are the reference without a flood, and show
// that the real packets open each server. One op is one real packet, from its
// own (spoofed) source and for its own allow address; it counts as admitted when sesamed
// logs its grant within 5 s, and the time to that log line (seen by
// polling every 10 ms) is its time to open. It prints admitted/op,
// the median and p99 time to open, the flood rate the sender kept, and
// the server's CPU (of one core) and peak RSS during the run. It asserts
// nothing about time: run it with
//
//	go test -run '^$' -bench SPAFlood -benchtime 10x ./e2e/
//
// bench/run (sesame-bench all, section spa) runs it and writes
// BENCHMARKS.md's table from what it prints: bench/sesame-bench/spabench.go
// reads these case names and metric units.
func BenchmarkSPAFlood(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, c := range []struct {
		name string
		rate int
		// start starts the server and returns it, the flood's frames
		// and the real packet asking for allow.
		start func(b *testing.B) (floodTarget, [][]byte, func(allow netip.Addr) []byte)
	}{
		{"fwknop-quiet", 1, fwknopFlood},
		{"fwknop-quiet-iptables", 1, func(b *testing.B) (floodTarget, [][]byte, func(netip.Addr) []byte) {
			return fwknopFloodOn(b, "iptables-nft")
		}},
		{"fwknop-garbage-20k", 20000, fwknopFlood},
		{"fwknop-garbage-100k", 100000, fwknopFlood},
		{"ssh-forged-20k", 20000, sshForgedFlood},
		{"fwknopd-quiet", 1, fwknopdFlood},
		{"fwknopd-garbage-20k", 20000, fwknopdFlood},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, frames, real := c.start(b)
			pid := s.pid
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != s.comm {
				b.Fatalf("pid %d is %q, not %s: its CPU and RSS would be another's", pid, comm, s.comm)
			}
			tx, mac := rawsend.ForPair(b, s.p)
			f := flood(b, s.p, frames, c.rate)
			s.flooded()
			cpu0, sent0, t0 := cpuTicks(b, pid), f.sent.Load(), time.Now()
			var opened []time.Duration
			b.ResetTimer()
			for i := range b.N {
				// Each real packet comes from its own address, as many users'
				// would: one source's packets in a row would spend its
				// signature budget (4, then one per 2 s), not the flood.
				allow := netip.AddrFrom4([4]byte{10, 79, byte(i >> 8), byte(i)})
				fr, err := rawsend.Frame(rawsend.Spec{DstMAC: mac, SrcIP: netip.AddrFrom4([4]byte{10, 80, byte(i >> 8), byte(i)}),
					DstIP: netnstest.ServerAddr4, SrcPort: 40000, DstPort: spaPort, Proto: knock.UDP, Payload: real(allow)})
				if err != nil {
					b.Fatal(err)
				}
				before := s.grants()
				sent := time.Now()
				if err := tx.SendFrame(fr); err != nil {
					b.Fatal(err)
				}
				if poll(5*time.Second, func() bool { return s.grants() > before }) {
					opened = append(opened, time.Since(sent))
				} else {
					// Lost on the way (a kernel socket drop, a full queue lane:
					// sesamed counts those, it does not log each) or refused
					// with its line held back by the limiter.
					b.Logf("packet %d (for %s) did not open within 5 s", i, allow)
				}
			}
			b.StopTimer()
			elapsed := time.Since(t0)
			cpu := float64(cpuTicks(b, pid)-cpu0) / 100 / elapsed.Seconds() // USER_HZ is 100 on Linux
			pps := float64(f.sent.Load()-sent0) / elapsed.Seconds()
			f.halt(b)
			rss := procStatusKB(b, pid, "VmHWM")
			b.ReportMetric(float64(len(opened))/float64(b.N), "admitted/op")
			if len(opened) > 0 {
				slices.Sort(opened)
				b.ReportMetric(float64(opened[len(opened)/2].Microseconds())/1000, "ms-open-p50")
				b.ReportMetric(float64(opened[(len(opened)*99)/100].Microseconds())/1000, "ms-open-p99")
			}
			b.ReportMetric(pps, "flood-pps")
			b.ReportMetric(cpu*100, "server-cpu-%")
			b.ReportMetric(float64(rss)/1024, "server-MB-peak-RSS")
		})
	}
}

// fwknopFlood: garbage of fwknop's alphabet and size from 4096 spoofed
// sources (one HMAC each); the real packets are fwknop's, as sesame spa
// builds them.
func fwknopFlood(b *testing.B) (floodTarget, [][]byte, func(netip.Addr) []byte) {
	return fwknopFloodOn(b, "nftables")
}

// fwknopFloodOn is fwknopFlood with sesamed on the firewall backend.
func fwknopFloodOn(b *testing.B, backend string) (floodTarget, [][]byte, func(netip.Addr) []byte) {
	s := startSPA(b, backend, spaStanza("ANY"), "")
	frames := udpFrames(b, s.p, garbage(4096), func(i int) netip.Addr { return spoofed(i, 4096) })
	return sesamedTarget(s), frames, fwknopReal(b)
}

// fwknopReal returns a maker of real fwknop packets, as sesame spa
// builds them.
func fwknopReal(b *testing.B) func(netip.Addr) []byte {
	keys := spa.Keys{Key: mustB64(b, spaKeyB64), HMACKey: mustB64(b, spaHMACB64), HMAC: spa.SHA256, Mode: spa.CBC}
	return func(allow netip.Addr) []byte {
		enc, err := spa.Encode(spa.Message{User: "bench", Timestamp: time.Now().Unix(), Type: spa.AccessMsg,
			Access: allow.String() + ",tcp/2222"}, keys, nil)
		if err != nil {
			b.Fatal(err)
		}
		return enc.Packet
	}
}

// sshForgedFlood is TestSPASSHForgedFloodDoesNotKeepAKeyOut's flood:
// half the packets name alice's key but carry mallory's signature (each
// would cost a signature check) from 4 spoofed sources, half name an
// unknown key from 4000; the real packets are alice's.
func sshForgedFlood(b *testing.B) (floodTarget, [][]byte, func(netip.Addr) []byte) {
	sshtest.RequireOpenSSH(b)
	dir := b.TempDir()
	alice := sshtest.KeyGen(b, dir, "alice", "ed25519", 0, "", "alice")
	mallory := sshtest.KeyGen(b, dir, "mallory", "ed25519", 0, "", "mallory")
	s := startSPA(b, "nftables", "", authLine(`open="tcp/2222"`, alice))
	victim := sshknock.FingerprintOf(alice.Public)
	forger, signer := mallory.Signer(b), alice.Signer(b)
	const n = 2048
	payloads := make([][]byte, n)
	for i := range payloads {
		pkt, err := sshknock.Build(rand.Reader, forger, sshknock.Knock{Server: netnstest.ServerAddr4,
			Ports: []knock.Port{{Num: protected, Proto: knock.TCP}}}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			copy(pkt[9:], victim[:])
		}
		payloads[i] = pkt
	}
	frames := udpFrames(b, s.p, payloads, func(i int) netip.Addr {
		if i%2 == 0 {
			return spoofed(i/2, 4)
		}
		return spoofed(100+i, 4000)
	})
	return sesamedTarget(s), frames, func(allow netip.Addr) []byte {
		pkt, err := sshknock.Build(rand.Reader, signer, sshknock.Knock{Server: netnstest.ServerAddr4, Allow: allow,
			Ports: []knock.Port{{Num: protected, Proto: knock.TCP}}}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return pkt
	}
}

// floodTarget is the server a flood is aimed at.
type floodTarget struct {
	p      *netnstest.Pair
	pid    int
	comm   string     // the process's name, checked before its CPU is read
	grants func() int // grants it made so far
	// flooded returns once the flood reaches the server.
	flooded func()
}

func sesamedTarget(s *spaServer) floodTarget {
	return floodTarget{p: s.p, pid: s.d.cmd.Process.Pid, comm: "sesamed", grants: s.grants,
		flooded: func() { s.waitLine(1, "SPA packet refused") }}
}

// fwknopdFlood is fwknopFlood aimed at Debian's fwknopd 2.6.10 (its
// iptables backend), the same stanza, garbage and real packets.
func fwknopdFlood(b *testing.B) (floodTarget, [][]byte, func(netip.Addr) []byte) {
	fwknoptest.ServerPath(b)
	p := netnstest.NewPair(b)
	srv := fwknoptest.Start(b, p.Server, netnstest.ServerIf, spaStanza("ANY"))
	frames := udpFrames(b, p, garbage(4096), func(i int) netip.Addr { return spoofed(i, 4096) })
	return floodTarget{p: p, pid: srv.Pid(), comm: "fwknopd",
		// One line per rule it adds: "... for ADDR -> ...".
		grants:  func() int { return len(fwknopdRule.FindAllString(srv.Output(), -1)) },
		flooded: func() { time.Sleep(time.Second) },
	}, frames, fwknopReal(b)
}

var fwknopdRule = regexp.MustCompile(`for 10\.79\.\d+\.\d+ -> `)

func mustB64(tb testing.TB, s string) []byte {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// cpuTicks is pid's user plus system time in clock ticks (/proc/PID/stat).
func cpuTicks(tb testing.TB, pid int) uint64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The fields after the command name, which ends in the last ')':
	// state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return u + s
}

// procStatusKB is a kB field of /proc/PID/status (VmHWM: peak RSS).
func procStatusKB(tb testing.TB, pid int, field string) uint64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("/proc/%d/status %s: %q", pid, field, v)
			}
			return n
		}
	}
	tb.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}
