package capture

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// waitFor is how long a privileged test waits for something that should
// happen within milliseconds; it only bounds a hung test.
const waitFor = 10 * time.Second

// sentinel is a port every live test's spec includes; a UDP datagram to
// it marks the end of a batch.
const sentinel = 9999

// liveCapture is a Handle running in a test, with what it delivered.
type liveCapture struct {
	h     *Handle
	pkts  chan knock.Packet
	done  chan error // Run's result
	beats atomic.Int64
}

// filterKinds are the kernel filters every live test runs with.
var filterKinds = []FilterKind{FilterEBPF, FilterClassic}

// startCapture opens a handle with the eBPF filter on iface inside ns
// and runs it; cleanup closes it and checks that Run returned nil.
func startCapture(t *testing.T, ns *netnstest.NS, iface string, spec FilterSpec) *liveCapture {
	t.Helper()
	return startCaptureKind(t, ns, iface, spec, FilterEBPF)
}

// startCaptureKind is startCapture with the given kind of kernel filter,
// which the test requires the handle to run.
func startCaptureKind(t *testing.T, ns *netnstest.NS, iface string, spec FilterSpec, kind FilterKind) *liveCapture {
	t.Helper()
	spec.Ports = append(spec.Ports, knock.Port{Num: sentinel, Proto: knock.UDP})
	c := &liveCapture{pkts: make(chan knock.Packet, 1024), done: make(chan error, 1)}
	if err := ns.Do(func() (err error) {
		c.h, err = open(iface, spec, kind == FilterEBPF)
		return err
	}); err != nil {
		t.Fatalf("Open %s: %v", iface, err)
	}
	if st := c.h.Stats(); st.Filter != kind {
		c.h.Close()
		t.Fatalf("Open %s: runs the %s filter, want %s (eBPF: %v)", iface, st.Filter, kind, st.EBPFErr)
	}
	go func() {
		c.done <- c.h.Run(context.Background(), func(p knock.Packet) { c.pkts <- p }, func() { c.beats.Add(1) })
	}()
	t.Cleanup(func() {
		c.h.Close()
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return after Close")
		}
	})
	return c
}

// expect waits until every packet in want has been delivered (in any
// order), then sends the sentinel with send and checks that nothing but
// the sentinel came in between: packets that should not be delivered were
// sent before it.
func (c *liveCapture) expect(t *testing.T, want []knock.Packet, sendSentinel func()) {
	t.Helper()
	pending := map[knock.Packet]int{}
	for _, p := range want {
		pending[p]++
	}
	deadline := time.After(waitFor)
	var extra []knock.Packet
	for len(pending) > 0 {
		select {
		case p := <-c.pkts:
			if pending[p] > 0 {
				pending[p]--
				if pending[p] == 0 {
					delete(pending, p)
				}
				continue
			}
			extra = append(extra, p)
		case <-deadline:
			t.Fatalf("not delivered: %v (unexpected: %v)", pending, extra)
		}
	}
	sendSentinel()
	for {
		select {
		case p := <-c.pkts:
			if p.Port == sentinel && p.Proto == knock.UDP {
				if len(extra) > 0 {
					t.Fatalf("delivered but not expected: %v", extra)
				}
				return
			}
			extra = append(extra, p)
		case <-deadline:
			t.Fatalf("sentinel not delivered (unexpected: %v)", extra)
		}
	}
}

// dialTCP sends one SYN to addr:port from inside ns (nothing listens, so
// the server answers with a RST and the dial fails at once).
func dialTCP(t *testing.T, ns *netnstest.NS, addr netip.Addr, port uint16) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, port).String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sendUDP sends a one-byte datagram to addr:port from inside ns.
func sendUDP(t *testing.T, ns *netnstest.NS, addr netip.Addr, port uint16) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte{0})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func tcpKnock(src, dst netip.Addr, port uint16) knock.Packet {
	return knock.Packet{Src: src, Dst: dst, Port: port, Proto: knock.TCP, Flags: knock.SYN}
}

func udpKnock(src, dst netip.Addr, port uint16) knock.Packet {
	return knock.Packet{Src: src, Dst: dst, Port: port, Proto: knock.UDP}
}

var (
	s4, c4 = netnstest.ServerAddr4, netnstest.ClientAddr4
	s6, c6 = netnstest.ServerAddr6, netnstest.ClientAddr6
)

func TestCaptureVeth(t *testing.T) {
	for _, kind := range filterKinds {
		t.Run(kind.String(), func(t *testing.T) { testCaptureVeth(t, kind) })
	}
}

func testCaptureVeth(t *testing.T, kind FilterKind) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	c := startCaptureKind(t, p.Server, netnstest.ServerIf, FilterSpec{
		Dsts:  []netip.Addr{s4, s6},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}},
	}, kind)
	if got := c.h.LinkType(); got != LinkEthernet {
		t.Fatalf("veth link type %s", got)
	}
	waitUnfilteredRead(t, c.h)
	base := c.h.Stats()

	dialTCP(t, p.Client, s4, 7000)
	sendUDP(t, p.Client, s4, 8000)
	dialTCP(t, p.Client, s6, 7000)
	sendUDP(t, p.Client, s6, 8000)
	// Not knocks: other ports, the other protocol on a knock port.
	dialTCP(t, p.Client, s4, 7001)
	sendUDP(t, p.Client, s4, 8001)
	sendUDP(t, p.Client, s4, 7000)
	dialTCP(t, p.Client, s6, 8000)
	c.expect(t, []knock.Packet{
		tcpKnock(c4, s4, 7000), udpKnock(c4, s4, 8000),
		tcpKnock(c6, s6, 7000), udpKnock(c6, s6, 8000),
	}, func() { sendUDP(t, p.Client, s4, sentinel) })

	// The kernel filter, not just the user-space check, kept the rest out:
	// every frame read after the unfiltered start was delivered.
	st := c.h.Stats()
	if read, delivered := st.Read-base.Read, st.Delivered-base.Delivered; read != delivered || delivered != 5 {
		t.Fatalf("read %d frames and delivered %d since start, want 5 and 5 (stats %+v)", read, delivered, st)
	}
}

// waitUnfilteredRead waits until Run has read the frames queued before
// the filter was attached, so that later counts only see filtered ones.
func waitUnfilteredRead(t *testing.T, h *Handle) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for st := h.Stats(); st.Read < st.Unfiltered; st = h.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("unfiltered frames not read: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCaptureLoopbackOnce: on lo every frame passes the packet socket
// twice (outgoing and incoming); the filter's prefix keeps one.
func TestCaptureLoopbackOnce(t *testing.T) {
	for _, kind := range filterKinds {
		t.Run(kind.String(), func(t *testing.T) { testCaptureLoopbackOnce(t, kind) })
	}
}

func testCaptureLoopbackOnce(t *testing.T, kind FilterKind) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNS(t, "lo")
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	c := startCaptureKind(t, ns, "lo", FilterSpec{
		Dsts:  []netip.Addr{lo4, lo6},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}},
	}, kind)
	waitUnfilteredRead(t, c.h)
	dialTCP(t, ns, lo4, 7000)
	sendUDP(t, ns, lo6, 8000)
	c.expect(t, []knock.Packet{tcpKnock(lo4, lo4, 7000), udpKnock(lo6, lo6, 8000)},
		func() { sendUDP(t, ns, lo4, sentinel) })
}

func TestCaptureSetFilterLive(t *testing.T) {
	for _, kind := range filterKinds {
		t.Run(kind.String(), func(t *testing.T) { testCaptureSetFilterLive(t, kind) })
	}
}

func testCaptureSetFilterLive(t *testing.T, kind FilterKind) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	c := startCaptureKind(t, p.Server, netnstest.ServerIf, FilterSpec{
		Dsts:  []netip.Addr{s4},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}},
	}, kind)
	waitUnfilteredRead(t, c.h)
	dialTCP(t, p.Client, s4, 7100)
	dialTCP(t, p.Client, s4, 7000)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 7000)}, func() { sendUDP(t, p.Client, s4, sentinel) })

	// Swap: 7000 out, 7100 and a new address in.
	if err := p.Server.Do(func() error {
		_, err := p.Server.Run("ip", "addr", "add", "10.77.0.5/24", "dev", netnstest.ServerIf)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s4b := netip.MustParseAddr("10.77.0.5")
	if err := c.h.SetFilter(FilterSpec{
		Dsts:  []netip.Addr{s4, s4b},
		Ports: []knock.Port{{Num: 7100, Proto: knock.TCP}, {Num: sentinel, Proto: knock.UDP}},
	}); err != nil {
		t.Fatalf("SetFilter: %v", err)
	}
	base := c.h.Stats()
	dialTCP(t, p.Client, s4, 7000)
	dialTCP(t, p.Client, s4, 7100)
	dialTCP(t, p.Client, s4b, 7100)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 7100), tcpKnock(c4, s4b, 7100)},
		func() { sendUDP(t, p.Client, s4, sentinel) })
	st := c.h.Stats()
	if read := st.Read - base.Read; read != 3 {
		t.Fatalf("read %d frames after SetFilter, want 3 (the kernel program did not change?) %+v", read, st)
	}
}

func TestCaptureCloseAndCancel(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	spec := FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}}
	open := func() *Handle {
		var h *Handle
		if err := p.Server.Do(func() (err error) {
			h, err = Open(netnstest.ServerIf, spec)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	waitRun := func(what string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: Run returned %v, want nil", what, err)
			}
		case <-time.After(waitFor):
			t.Fatalf("%s: Run did not return", what)
		}
	}

	t.Run("close", func(t *testing.T) {
		h := open()
		done := make(chan error, 1)
		var inRun atomic.Bool
		go func() {
			inRun.Store(true)
			done <- h.Run(context.Background(), func(knock.Packet) {}, nil)
		}()
		waitTrue(t, func() bool { return inRun.Load() && h.inRead.Load() })
		var wg sync.WaitGroup
		for range 3 { // concurrent and repeated Close
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
		}
		waitRun("Close", done)
		wg.Wait()
		if err := h.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := h.SetFilter(spec); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("SetFilter after Close: %v, want net.ErrClosed", err)
		}
		if err := h.Run(context.Background(), func(knock.Packet) {}, nil); err == nil {
			t.Fatal("second Run: nil error")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		h := open()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx, func(knock.Packet) {}, nil) }()
		waitTrue(t, h.inRead.Load)
		cancel()
		waitRun("cancel", done)
	})
	t.Run("cancelled before Run", func(t *testing.T) {
		h := open()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx, func(knock.Packet) {}, nil) }()
		waitRun("pre-cancelled", done)
	})
	t.Run("close from deliver", func(t *testing.T) {
		h := open()
		done := make(chan error, 1)
		go func() { done <- h.Run(context.Background(), func(knock.Packet) { h.Close() }, nil) }()
		waitTrue(t, h.inRead.Load)
		dialTCP(t, p.Client, s4, 7000)
		waitRun("close from deliver", done)
	})
}

// waitTrue polls cond until it holds or the test's patience runs out.
func waitTrue(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never became true")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestCaptureLinkLoss: Run ends with an error when the interface goes
// down or away; the caller reopens.
func TestCaptureLinkLoss(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"link down", []string{"ip", "link", "set", netnstest.ServerIf, "down"}},
		{"link deleted", []string{"ip", "link", "del", netnstest.ServerIf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			var h *Handle
			if err := p.Server.Do(func() (err error) {
				h, err = Open(netnstest.ServerIf, FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			done := make(chan error, 1)
			go func() { done <- h.Run(context.Background(), func(knock.Packet) {}, nil) }()
			waitTrue(t, h.inRead.Load)
			p.Server.MustRun(tc.argv...)
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Run returned nil after the link went away")
				}
				t.Logf("Run: %v", err)
			case <-time.After(waitFor):
				t.Fatal("Run did not return after the link went away")
			}
		})
	}
}

// TestCaptureHeartbeatLive: beats come while the reader waits, and the
// reader is marked as not waiting while deliver runs (the state beat
// reads; beat's decisions are covered by TestBeat).
func TestCaptureHeartbeatLive(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	var h *Handle
	if err := p.Server.Do(func() (err error) {
		h, err = Open(netnstest.ServerIf, FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var beats atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- h.Run(context.Background(), func(knock.Packet) {
			close(entered)
			<-release
		}, func() { beats.Add(1) })
	}()
	waitTrue(t, func() bool { return beats.Load() >= 3 }) // idle: at least two ticks after the first
	dialTCP(t, p.Client, s4, 7000)
	<-entered
	if h.inRead.Load() {
		t.Fatal("reader marked as waiting in the kernel while deliver runs")
	}
	progress := h.progress.Load()
	close(release)
	waitTrue(t, func() bool { return h.progress.Load() == progress+1 && h.inRead.Load() })
	h.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after := beats.Load()
	time.Sleep(2 * HeartbeatInterval)
	if beats.Load() != after {
		t.Fatal("heartbeat called after Run returned")
	}
}

func TestBeat(t *testing.T) {
	var h Handle
	tick := make(chan time.Time)
	done := make(chan struct{})
	beats := make(chan struct{}, 16)
	finished := make(chan struct{})
	go func() {
		h.beat(done, tick, func() { beats <- struct{}{} })
		close(finished)
	}()
	expectBeat := func(step string, want bool) {
		t.Helper()
		tick <- time.Time{}
		// A second tick returns only after beat finished with the first.
		tick <- time.Time{}
		n := len(beats)
		for range n {
			<-beats
		}
		if want && n == 0 || !want && n != 0 {
			t.Fatalf("%s: %d beats for two ticks, want beats=%v", step, n, want)
		}
	}
	<-beats // the first beat comes at once
	h.inRead.Store(true)
	expectBeat("waiting in read", true)
	h.inRead.Store(false)
	h.progress.Add(1)
	tick <- time.Time{} // progress since the last tick: beat
	tick <- time.Time{} // no progress, not in read: stuck
	if n := len(beats); n != 1 {
		t.Fatalf("progress then stuck: %d beats, want 1", n)
	}
	<-beats
	expectBeat("stuck", false)
	h.progress.Add(1)
	tick <- time.Time{}
	tick <- time.Time{}
	if n := len(beats); n != 1 {
		t.Fatalf("unstuck: %d beats, want 1", n)
	}
	close(done)
	<-finished
}

// TestCaptureTun captures on a tun device (ARPHRD_NONE: frames start at
// the IP header), with packets written into it from user space.
func TestCaptureTun(t *testing.T) {
	for _, kind := range filterKinds {
		t.Run(kind.String(), func(t *testing.T) { testCaptureTun(t, kind) })
	}
}

func testCaptureTun(t *testing.T, kind FilterKind) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNS(t, "tun")
	tun, err := openTun(ns, "sesametun0")
	if err != nil {
		t.Skipf("no tun device here: %v", err)
	}
	t.Cleanup(func() { tun.Close() })
	ns.MustRun("ip", "addr", "add", "10.88.0.1/24", "dev", "sesametun0")
	ns.MustRun("ip", "-6", "addr", "add", "fd88::1/64", "dev", "sesametun0", "nodad")
	ns.MustRun("ip", "link", "set", "sesametun0", "up")
	t4, r4 := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	t6, r6 := netip.MustParseAddr("fd88::1"), netip.MustParseAddr("fd88::2")
	c := startCaptureKind(t, ns, "sesametun0", FilterSpec{
		Dsts:  []netip.Addr{t4, t6},
		Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}},
	}, kind)
	if got := c.h.LinkType(); got != LinkRawIP {
		t.Fatalf("tun link type %s, want %s", got, LinkRawIP)
	}
	write := func(s rawsendSpec) {
		t.Helper()
		if _, err := tun.Write(rawFrame(t, s)); err != nil {
			t.Fatalf("write to tun: %v", err)
		}
	}
	write(syn(r4, t4, 7000))
	write(udp(r6, t6, 8000))
	write(syn(r4, t4, 7001))
	write(udp(r4, t4, 7000))
	c.expect(t, []knock.Packet{tcpKnock(r4, t4, 7000), udpKnock(r6, t6, 8000)},
		func() { write(udp(r4, t4, sentinel)) })
}

// The receive buffer is what keeps a burst from being dropped while the
// reader is descheduled; pcapgo gives no option for it, so check the
// reflection reaching its socket still works with this gopacket.
func TestReceiveBufferIsEnlarged(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	var h *Handle
	if err := p.Server.Do(func() (err error) {
		h, err = Open(netnstest.ServerIf, FilterSpec{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	st := h.Stats()
	if st.ReceiveBufferErr != nil {
		t.Fatalf("receive buffer not set: %v", st.ReceiveBufferErr)
	}
	// The kernel reports twice the size asked for (its bookkeeping share).
	if st.ReceiveBuffer < ReceiveBuffer {
		t.Errorf("receive buffer %d, want at least %d", st.ReceiveBuffer, ReceiveBuffer)
	}
}

// TestCaptureReadsInBatches: frames queued while the reader is busy are
// read many per system call, and none is lost.
func TestCaptureReadsInBatches(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	var h *Handle
	if err := p.Server.Do(func() (err error) {
		h, err = Open(netnstest.ServerIf, FilterSpec{Dsts: []netip.Addr{s4}, Ports: []knock.Port{{Num: 7000, Proto: knock.UDP}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	tx, mac := rawsend.ForPair(t, p)
	const burst = 1000
	entered, release := make(chan struct{}), make(chan struct{})
	got := make(chan knock.Packet, burst+1)
	done := make(chan error, 1)
	first := true
	go func() {
		done <- h.Run(context.Background(), func(pkt knock.Packet) {
			if first {
				first = false
				close(entered)
				<-release // hold the reader while the burst queues up
			}
			got <- pkt
		}, nil)
	}()
	waitUnfilteredRead(t, h)
	send := func(sport uint16) {
		s := udp(c4, s4, 7000)
		s.SrcPort, s.SrcMAC, s.DstMAC = sport, tx.MAC(), mac
		if err := tx.Send(s); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	<-entered
	base := h.Stats()
	for i := 0; i < burst; i++ {
		send(uint16(2 + i))
	}
	close(release)
	<-got // the first
	for i := 0; i < burst; i++ {
		select {
		case pkt := <-got:
			if pkt != udpKnock(c4, s4, 7000) {
				t.Fatalf("frame %d: %v", i, pkt)
			}
		case <-time.After(waitFor):
			t.Fatalf("%d of %d frames delivered", i, burst)
		}
	}
	st := h.Stats()
	reads, frames := st.Reads-base.Reads, st.Read-base.Read
	t.Logf("%d frames in %d reads", frames, reads)
	if frames != burst || reads > burst/readBatch+burst/10 {
		t.Fatalf("%d frames in %d reads: want %d frames in about %d", frames, reads, burst, burst/readBatch)
	}
	h.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCaptureLongFrames: a knock in a frame longer than the reader's
// buffer (a jumbo frame) is read cut short and still decoded.
func TestCaptureLongFrames(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	p.Server.MustRun("ip", "link", "set", netnstest.ServerIf, "mtu", "9000")
	p.Client.MustRun("ip", "link", "set", netnstest.ClientIf, "mtu", "9000")
	c := startCapture(t, p.Server, netnstest.ServerIf, FilterSpec{Dsts: []netip.Addr{s4, s6}, Ports: []knock.Port{{Num: 7000, Proto: knock.UDP}}})
	waitUnfilteredRead(t, c.h)
	tx, mac := rawsend.ForPair(t, p)
	for _, dst := range []netip.Addr{s4, s6} {
		src := c4
		if dst.Is6() {
			src = c6
		}
		s := udp(src, dst, 7000)
		s.SrcMAC, s.DstMAC, s.Payload = tx.MAC(), mac, make([]byte, 2*frameBuf)
		if err := tx.Send(s); err != nil {
			t.Fatal(err)
		}
	}
	c.expect(t, []knock.Packet{udpKnock(c4, s4, 7000), udpKnock(c6, s6, 7000)}, func() { sendUDP(t, p.Client, s4, sentinel) })
}
