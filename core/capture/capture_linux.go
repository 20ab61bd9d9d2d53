package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
)

// HeartbeatInterval is how often Run calls its heartbeat while the reader
// is healthy.
const HeartbeatInterval = 500 * time.Millisecond

// Handle is a live capture on one interface: an AF_PACKET socket with a
// BPF filter, read by Run. Open it in the network namespace it should
// capture in; the socket stays there.
type Handle struct {
	iface string
	link  LinkType
	eth   *pcapgo.EthernetHandle

	// set is the user-space check that mirrors the kernel filter; SetFilter
	// swaps it, Run reads it per packet.
	set atomic.Pointer[specSet]
	// filterMu serialises SetFilter so that the kernel program and set
	// always come from the same spec.
	filterMu sync.Mutex

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error // written inside closeOnce

	running atomic.Bool // Run may run once

	// Reader liveness, written by Run's goroutine, read by its ticker:
	// inRead is true while the reader waits in the kernel; progress counts
	// frames fully handled.
	inRead   atomic.Bool
	progress atomic.Uint64

	reads, read, decoded, delivered, datagrams, unfiltered atomic.Uint64

	kernelMu    sync.Mutex // guards kernelDrops
	kernelDrops uint64

	// The program attach put on the socket: its kind, its length, and
	// whether it checks the spec exactly (else user space drops what it
	// let by).
	filterKind  atomic.Uint32 // a FilterKind
	filterLen   atomic.Int64
	filterExact atomic.Bool

	// The eBPF filter and its maps while it is the one in force (guarded
	// by filterMu). noEBPF is set once the kernel refused it (ebpfErr
	// says why): the handle then keeps to the classic program.
	kern    *ebpfFilter
	noEBPF  bool
	ebpfErr error
	// The eBPF counters as last read (guarded by filterMu): Stats after
	// Close, or after a fall back to the classic filter, reports these.
	kernDropped, kernKept uint64

	rcvbuf    int   // socket receive buffer the kernel granted (bytes, doubled as the kernel reports it)
	rcvbufErr error // why it could not be set, if so
}

// Stats counts what a Handle has seen since Open.
type Stats struct {
	Reads     uint64 // system calls that returned frames (one returns up to readBatch)
	Read      uint64 // frames read from the socket
	Decoded   uint64 // frames that were TCP or UDP over IP
	Delivered uint64 // candidate knocks passed to deliver
	Datagrams uint64 // datagrams passed to Deliver.Datagram
	// Unfiltered is how many frames were queued when Open had attached the
	// filter (an upper bound on those that arrived before it): pcapgo binds
	// the socket before a filter can be set. Run checks them like any other.
	Unfiltered uint64
	// KernelDrops counts frames the kernel dropped because the socket's
	// receive buffer was full (PACKET_STATISTICS).
	KernelDrops uint64
	// Filter is the kind of kernel filter in force: FilterEBPF, or
	// FilterClassic when the kernel refused the eBPF one, for the reason
	// in EBPFErr.
	Filter  FilterKind
	EBPFErr error
	// FilterInstructions is the length of the kernel filter in force
	// (eBPF or classic instructions); FilterExact is false when it is a
	// coarser one (a classic program for a spec that did not fit the
	// kernel's limits), which lets more frames reach the user-space
	// check. The eBPF filter is always exact.
	FilterInstructions int
	FilterExact        bool
	// KernelDropped and KernelKept are the eBPF filter's own counts of
	// the frames it dropped (not candidate knocks; the host's outgoing
	// frames are not counted) and kept, since Open. The classic filter
	// keeps no counts: both stay where the eBPF one left them.
	KernelDropped, KernelKept uint64
	// ReceiveBuffer is the socket's receive buffer as the kernel reports
	// it; ReceiveBufferErr says why ReceiveBuffer could not be applied.
	ReceiveBuffer    int
	ReceiveBufferErr error
}

// FilterKind says which kernel filter a Handle runs.
type FilterKind uint8

const (
	// FilterEBPF is the eBPF socket filter: the spec in hash maps, exact
	// for any size, updated in place.
	FilterEBPF FilterKind = iota + 1
	// FilterClassic is the classic BPF program, exact while the spec fits
	// the kernel's limits and coarser past them; it needs no privilege
	// beyond the packet socket's.
	FilterClassic
)

func (k FilterKind) String() string {
	switch k {
	case FilterEBPF:
		return "ebpf"
	case FilterClassic:
		return "classic"
	}
	return "none"
}

// Open starts capturing on iface with spec's filter attached. The link
// type comes from the interface (see LinkTypeOf).
//
// pcapgo opens and binds the socket before a filter can be attached, so
// for a moment the socket takes every frame. The user-space check in Run
// applies spec to those frames too, so none is delivered that the filter
// would have dropped; the one thing it cannot tell is the host's own
// outgoing frames (pcapgo does not report the packet type), so a knock
// sent from this host to itself in that moment may be delivered twice,
// which the matcher ignores as a repeat.
func Open(iface string, spec FilterSpec) (*Handle, error) {
	return open(iface, spec, true)
}

// open is Open; useEBPF false starts the handle on the classic filter
// (tests and benchmarks compare the two).
func open(iface string, spec FilterSpec, useEBPF bool) (*Handle, error) {
	link, err := LinkTypeOf(iface)
	if err != nil {
		return nil, err
	}
	n, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	eth, err := pcapgo.NewEthernetHandle(iface)
	if err != nil {
		return nil, fmt.Errorf("capture: open %s: %w", iface, err)
	}
	h := &Handle{iface: iface, link: link, eth: eth, noEBPF: !useEBPF}
	if err := h.attach(n); err != nil {
		eth.Close()
		if h.kern != nil {
			h.kern.close()
		}
		return nil, err
	}
	h.rcvbuf, h.rcvbufErr = setReceiveBuffer(eth, ReceiveBuffer)
	// pcapgo asks for a timestamp and auxiliary data with every frame;
	// Run reads neither, and a socket asking for timestamps makes the
	// kernel stamp every frame the host receives.
	_ = h.control(func(fd int) error {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 0)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMP, 0)
		return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 0)
	})
	h.set.Store(newSpecSet(n))
	// The first PACKET_STATISTICS read covers everything since the socket
	// was opened; it also resets the kernel's counters.
	if st, err := eth.Stats(); err == nil {
		h.unfiltered.Store(uint64(st.Packets - st.Drops))
		h.kernelDrops = uint64(st.Drops)
	}
	return h, nil
}

// LinkType reports the framing of the captured interface.
func (h *Handle) LinkType() LinkType { return h.link }

// SetFilter replaces the filter on the live socket; nothing is reopened
// and no queued frame is lost. Frames already queued that the new spec
// does not match are not delivered. It is safe to call while Run runs.
func (h *Handle) SetFilter(spec FilterSpec) error {
	n, err := normalize(spec)
	if err != nil {
		return err
	}
	h.filterMu.Lock()
	defer h.filterMu.Unlock()
	if h.closed.Load() {
		return fmt.Errorf("capture: set filter on %s: %w", h.iface, net.ErrClosed)
	}
	// The user-space set goes first: a knock for a newly added port that
	// the new program lets through must find the set already accepting it.
	old := h.set.Swap(newSpecSet(n))
	if err := h.attach(n); err != nil {
		h.set.Store(old)
		return err
	}
	return nil
}

// attach puts the filter for n on the socket: the eBPF program with n in
// its maps when the kernel takes it, else the most exact classic program
// the kernel accepts (see attachClassic). Once the kernel has refused the
// eBPF filter (no CAP_BPF or CAP_SYS_ADMIN, bpf(2) denied by a seccomp
// filter, a kernel without it, a failed map update) the handle keeps to
// the classic one. Callers hold filterMu or own h alone.
func (h *Handle) attach(n normSpec) error {
	if !h.noEBPF {
		err := h.attachEBPF(n)
		if err == nil {
			h.filterKind.Store(uint32(FilterEBPF))
			h.filterLen.Store(int64(h.kern.insns))
			h.filterExact.Store(true)
			return nil
		}
		h.noEBPF, h.ebpfErr = true, err
	}
	if err := h.attachClassic(n); err != nil {
		return err
	}
	if h.kern != nil {
		// The classic program replaced it on the socket.
		if d, k, err := h.kern.read(); err == nil {
			h.kernDropped, h.kernKept = d, k
		}
		h.kern.close()
		h.kern = nil
	}
	return nil
}

// attachEBPF updates the eBPF filter's maps to n in place, or, the first
// time or when n outgrows them, loads a filter sized for n and attaches
// it in place of the old one.
func (h *Handle) attachEBPF(n normSpec) error {
	if h.kern != nil && h.kern.fits(n) {
		return h.kern.update(n)
	}
	var counts *ebpf.Map
	if h.kern != nil {
		counts = h.kern.counts
	}
	f, err := newEBPFFilter(h.link, n, counts)
	if err != nil {
		return err
	}
	if err := h.control(f.attachTo); err != nil {
		f.close()
		return err
	}
	f.succeed(h.kern)
	if h.kern != nil {
		h.kern.close()
	}
	h.kern = f
	return nil
}

// control runs fn on the socket's file descriptor.
func (h *Handle) control(fn func(fd int) error) error {
	rc, err := socketConn(h.eth)
	if err != nil {
		return fmt.Errorf("capture: %s: %w", h.iface, err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("capture: %s: %w", h.iface, err)
	}
	return ferr
}

// attachClassic puts the most exact classic program for n that the
// kernel accepts on the socket: it tries each of attachBudgets in turn.
// The kernel refuses a program over BPF_MAXINSNS, and one that does not
// fit the socket's option memory (net.core.optmem_max) once translated; a
// coarser program costs only user-space checks of packets the exact one
// would have dropped.
func (h *Handle) attachClassic(n normSpec) error {
	var sizes []string
	var last error
	for _, budget := range attachBudgets {
		prog, exact, err := assemble(n, h.link, budget)
		if err != nil {
			return err
		}
		if last = h.eth.SetBPF(prog); last != nil {
			sizes = append(sizes, strconv.Itoa(len(prog)))
			continue
		}
		h.filterKind.Store(uint32(FilterClassic))
		h.filterLen.Store(int64(len(prog)))
		h.filterExact.Store(exact)
		return nil
	}
	return fmt.Errorf("%w on %s (programs of %s instructions): %w", ErrFilterAttach, h.iface, strings.Join(sizes, ", "), last)
}

// Run reads frames until ctx is done or Close is called, and returns nil
// then. It decodes each frame and calls deliver, on Run's goroutine, for
// every packet that matches the current filter spec; deliver must not
// keep a reference to anything but the packet (a value). A read error
// (the interface went down or was deleted: the kernel reports ENETDOWN)
// ends Run with that error; the handle is then closed, and the caller
// reopens. Run may be called once per Handle; when ctx is done it closes
// the handle.
//
// heartbeat, if not nil, is called every HeartbeatInterval while the
// reader is healthy: waiting in the kernel for a frame, or having finished
// at least one frame since the last beat. A reader stuck in deliver (or in
// decoding) misses beats, which is what a supervisor watches for. Beats
// come from a goroutine Run starts and waits for; they are never
// concurrent with each other, the first comes at once, and none comes
// after Run returns.
func (h *Handle) Run(ctx context.Context, deliver func(knock.Packet), heartbeat func()) error {
	return h.RunDeliver(ctx, Deliver{Knock: deliver}, heartbeat)
}

// Deliver receives what RunDeliver captures, on its goroutine.
type Deliver struct {
	// Knock receives the candidate knocks (FilterSpec.Ports).
	Knock func(knock.Packet)
	// Datagram receives the UDP datagrams to FilterSpec.Datagrams ports:
	// the packet and its payload, a view into the capture's buffer that
	// is valid only during the call (copy what must outlive it). Nil
	// drops them.
	Datagram func(p knock.Packet, payload []byte)
}

// RunDeliver is Run with datagrams: candidate knocks go to d.Knock and
// datagrams to FilterSpec.Datagrams ports, with their payloads, to
// d.Datagram. Neither path allocates.
func (h *Handle) RunDeliver(ctx context.Context, d Deliver, heartbeat func()) error {
	if !h.running.CompareAndSwap(false, true) {
		return fmt.Errorf("capture: Run on %s: already running or finished", h.iface)
	}
	stop := context.AfterFunc(ctx, func() { h.Close() })
	defer stop()
	if heartbeat != nil {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		t := time.NewTicker(HeartbeatInterval)
		defer t.Stop()
		go func() {
			defer wg.Done()
			h.beat(done, t.C, heartbeat)
		}()
		defer wg.Wait()
		defer close(done)
	}
	dec := NewDecoder(h.link)
	rc, err := socketConn(h.eth)
	if err != nil {
		h.Close()
		return fmt.Errorf("capture: read %s: %w", h.iface, err)
	}
	r := newBatchReader(rc)
	for {
		h.inRead.Store(true)
		n, err := r.read()
		h.inRead.Store(false)
		if err != nil {
			if h.closed.Load() {
				return nil
			}
			h.Close()
			return fmt.Errorf("capture: read %s: %w", h.iface, err)
		}
		h.reads.Add(1)
		h.read.Add(uint64(n))
		for i := 0; i < n; i++ {
			if pkt, ok := dec.Decode(r.frame(i)); ok {
				h.decoded.Add(1)
				isKnock, isDgram := h.set.Load().classify(pkt)
				if isKnock && d.Knock != nil {
					h.delivered.Add(1)
					d.Knock(pkt)
				}
				if isDgram && d.Datagram != nil {
					h.datagrams.Add(1)
					d.Datagram(pkt, dec.Payload())
				}
			}
			h.progress.Add(1)
		}
	}
}

// beat runs on its own goroutine until done is closed: a beat at once,
// then one per tick while the reader is waiting in the kernel or has
// finished a frame since the previous tick.
func (h *Handle) beat(done <-chan struct{}, tick <-chan time.Time, heartbeat func()) {
	heartbeat()
	last := h.progress.Load()
	for {
		select {
		case <-done:
			return
		case <-tick:
		}
		p := h.progress.Load()
		if h.inRead.Load() || p != last {
			heartbeat()
		}
		last = p
	}
}

// Stats returns the handle's counters. It may be called at any time, also
// after Close (the kernel drop count then stays where it was).
func (h *Handle) Stats() Stats {
	h.kernelMu.Lock()
	if !h.closed.Load() {
		// PACKET_STATISTICS resets on read; accumulate.
		if st, err := h.eth.Stats(); err == nil {
			h.kernelDrops += uint64(st.Drops)
		}
	}
	drops := h.kernelDrops
	h.kernelMu.Unlock()
	h.filterMu.Lock()
	ebpfErr := h.ebpfErr
	if h.kern != nil && !h.closed.Load() {
		if d, k, err := h.kern.read(); err == nil {
			h.kernDropped, h.kernKept = d, k
		}
	}
	kd, kk := h.kernDropped, h.kernKept
	h.filterMu.Unlock()
	return Stats{
		Reads:       h.reads.Load(),
		Read:        h.read.Load(),
		Decoded:     h.decoded.Load(),
		Delivered:   h.delivered.Load(),
		Datagrams:   h.datagrams.Load(),
		Unfiltered:  h.unfiltered.Load(),
		KernelDrops: drops,

		Filter:             FilterKind(h.filterKind.Load()),
		EBPFErr:            ebpfErr,
		FilterInstructions: int(h.filterLen.Load()),
		FilterExact:        h.filterExact.Load(),
		KernelDropped:      kd,
		KernelKept:         kk,

		ReceiveBuffer:    h.rcvbuf,
		ReceiveBufferErr: h.rcvbufErr,
	}
}

// Close closes the socket, which makes a pending read in Run return at
// once. It is safe to call more than once and concurrently with Run and
// SetFilter; it does not wait for Run to return (Run's deliver may call
// it).
func (h *Handle) Close() error {
	h.closeOnce.Do(func() {
		h.filterMu.Lock()
		h.closed.Store(true)
		h.filterMu.Unlock()
		if err := h.eth.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			h.closeErr = fmt.Errorf("capture: close %s: %w", h.iface, err)
		}
		h.filterMu.Lock()
		if h.kern != nil {
			if d, k, err := h.kern.read(); err == nil {
				h.kernDropped, h.kernKept = d, k
			}
			h.kern.close()
			h.kern = nil
		}
		h.filterMu.Unlock()
	})
	return h.closeErr
}
