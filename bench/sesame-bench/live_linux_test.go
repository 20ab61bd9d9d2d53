package main

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Live tests: the generator and the knockers against a real kernel, in
// namespaces from netnstest. They check what the tools report against
// what the kernel saw, never how fast anything was.

func serverMAC(t *testing.T, p *netnstest.Pair) net.HardwareAddr {
	t.Helper()
	mac, err := net.ParseMAC(strings.TrimSpace(p.Server.MustRun("cat", "/sys/class/net/"+netnstest.ServerIf+"/address")))
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func rxPackets(t *testing.T, ns *netnstest.NS) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimSpace(ns.MustRun("cat", "/sys/class/net/"+netnstest.ServerIf+"/statistics/rx_packets")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every frame the generator says it sent reaches the server, and UDP
// knocks from real sources arrive as datagrams, so the kernel's IP and
// UDP input took their headers and lengths. (A veth marks frames as
// checksummed, so checksums are checked against gopacket's in
// frames_test.go instead.)
func TestGenerateDelivers(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	mac := serverMAC(t, p)
	for _, fam := range []int{4, 6} {
		dst, src := netnstest.ServerAddr4, netnstest.ClientAddr4
		if fam == 6 {
			dst, src = netnstest.ServerAddr6, netnstest.ClientAddr6
		}
		var conn net.PacketConn
		if err := p.Server.Do(func() (err error) {
			conn, err = net.ListenPacket("udp", netip.AddrPortFrom(dst, 5555).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// The socket's buffer holds every datagram even if the reader is slow.
		if err := conn.(*net.UDPConn).SetReadBuffer(2 << 20); err != nil {
			t.Fatal(err)
		}
		seq := []knock.Port{{Num: 5555, Proto: knock.UDP}}
		const n = 200
		got := make(chan int)
		go func() {
			buf := make([]byte, 64)
			k := 0
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for k < n {
				if _, _, err := conn.ReadFrom(buf); err != nil {
					break
				}
				k++
			}
			got <- k
		}()
		var rep genReport
		err := p.Client.Do(func() (err error) {
			rep, err = generate(context.Background(), genOptions{Iface: netnstest.ClientIf, DstMAC: mac, Dst: dst,
				Mode: modeKnock, Seq: seq, Sources: []netip.Addr{src}, Count: n, Rate: 0, Batch: 64})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Sent != n || rep.Errors != 0 {
			t.Fatalf("IPv%d: report %+v, want %d sent", fam, rep, n)
		}
		if k := <-got; k != n {
			t.Fatalf("IPv%d: %d of %d UDP knocks arrived as datagrams", fam, k, n)
		}
		conn.Close()
	}

	// A paced flood stops at its count, and the server counts every frame.
	for _, fam := range []int{4, 6} {
		dst, spoof := netnstest.ServerAddr4, spoof4
		if fam == 6 {
			dst, spoof = netnstest.ServerAddr6, spoof6
		}
		seq, _ := knock.ParseSequence("7000,8000,9000")
		before := rxPackets(t, p.Server)
		var rep genReport
		err := p.Client.Do(func() (err error) {
			rep, err = generate(context.Background(), genOptions{Iface: netnstest.ClientIf, DstMAC: mac, Dst: dst,
				Mode: modeFloodFirst, Seq: seq, Spoof: spoof, Flags: knock.SYN, Rate: 20000, Count: 5000, Duration: time.Minute})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Sent != 5000 || rep.PPS <= 0 {
			t.Fatalf("IPv%d flood: report %+v, want 5000 sent", fam, rep)
		}
		if d := rxPackets(t, p.Server) - before; d < rep.Sent {
			t.Fatalf("IPv%d flood: the server received %d frames, the generator says it sent %d", fam, d, rep.Sent)
		}
	}
}

// The knockers report a connection only once the door is open: against
// a port a firewall drops, nobody gets in; when the drop is removed at a
// known moment, no knocker's connection is earlier than that moment.
func TestKnockersMeasureTheDoor(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	mac := serverMAC(t, p)
	p.Server.Serve(t, 2222)
	extra := netip.MustParseAddr("10.77.0.3")
	p.Client.MustRun("ip", "addr", "add", extra.String()+"/24", "dev", netnstest.ClientIf)
	seq, _ := knock.ParseSequence("7000,8000,9000")
	o := knockerOptions{Iface: netnstest.ClientIf, DstMAC: mac, Dst: netnstest.ServerAddr4, Port: 2222, Seq: seq,
		Flags: knock.SYN, Sources: []netip.Addr{netnstest.ClientAddr4, extra}, Interval: time.Millisecond,
		Life: 50 * time.Millisecond, Timeout: 2 * time.Second, Concurrency: 2}
	run := func() []sample {
		t.Helper()
		var ss []sample
		if err := p.Client.Do(func() (err error) {
			ss, err = runKnockers(context.Background(), o)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ss
	}

	// Open port: everyone gets in.
	for _, s := range run() {
		if !s.OK || s.LatencyMS <= 0 || s.ConnNS <= s.KnockNS || s.Attempts < 1 {
			t.Errorf("open port: %+v", s)
		}
	}

	// Dropped port: nobody does, and they kept trying until the timeout.
	p.Server.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "DROP")
	o.Timeout = 300 * time.Millisecond
	for _, s := range run() {
		if s.OK || s.Attempts < 10 {
			t.Errorf("dropped port: %+v", s)
		}
	}

	// The drop goes away 300 ms after the knockers start.
	o.Timeout = 5 * time.Second
	opened := make(chan int64, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		// Stamped before iptables starts: the kernel's change comes after.
		at := monoNow()
		p.Server.MustRun("iptables", "-D", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "DROP")
		opened <- at
	}()
	ss := run()
	at := <-opened
	for _, s := range ss {
		if !s.OK {
			t.Errorf("door opened but %s never got in: %+v", s.Src, s)
		} else if s.ConnNS < at {
			t.Errorf("%s connected %v before the door opened", s.Src, time.Duration(at-s.ConnNS))
		}
	}
}
