package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// The knockers run on one locked OS thread as an event loop over raw
// non-blocking sockets and epoll_pwait2: Go's timers fire with about a
// millisecond of slack when the process is idle, too coarse for
// sub-millisecond latencies, while epoll_pwait2's nanosecond timeout with
// the thread's timer slack set to 1 ns wakes within a few microseconds.

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// A knocker waits for its turn, knocks and probes, then is done.
const (
	waiting = iota
	probing
	done
)

// knocker is one source's progress. Owned by the loop.
type knocker struct {
	src      netip.Addr
	frames   [][]byte
	state    int
	s        sample
	nextAt   int64 // next connection attempt
	deadline int64
}

// attempt is one connection attempt in flight.
type attempt struct {
	k    *knocker
	born int64
}

type loop struct {
	o    knockerOptions
	ep   int
	tx   *rawsend.Bulk
	live map[int32]attempt // by fd
	evs  []unix.EpollEvent
}

// runKnockers knocks from every source and measures each one's
// knock-to-connect time. It returns the samples in source order.
func runKnockers(ctx context.Context, o knockerOptions) ([]sample, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// The slack is the thread's; give it back before the runtime reuses it.
	if old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil {
		defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	}
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	tx, err := rawsend.OpenBulk(o.Iface, len(o.Seq))
	if err != nil {
		return nil, err
	}
	defer tx.Close()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	l := &loop{o: o, ep: ep, tx: tx, live: map[int32]attempt{}, evs: make([]unix.EpollEvent, 256)}
	defer l.closeAll(nil)
	ks, err := l.build()
	if err != nil {
		return nil, err
	}
	return l.run(ctx, ks)
}

// build frames every knocker's sequence in advance, so that sending is
// one system call per knock.
func (l *loop) build() ([]*knocker, error) {
	var ks []*knocker
	for _, src := range l.o.Sources {
		k := &knocker{src: src, s: sample{Src: src.String()}}
		for i, p := range l.o.Seq {
			spec := rawsend.Spec{SrcMAC: l.tx.MAC(), DstMAC: l.o.DstMAC, SrcIP: src, DstIP: l.o.Dst,
				SrcPort: uint16(30000 + i), DstPort: p.Num, Proto: p.Proto}
			if p.Proto == knock.TCP {
				spec.Flags = l.o.Flags
			} else {
				spec.Payload = []byte{0} // knock sends one byte
			}
			f, err := rawsend.Frame(spec)
			if err != nil {
				return nil, err
			}
			k.frames = append(k.frames, f)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

func (l *loop) run(ctx context.Context, ks []*knocker) ([]sample, error) {
	interval, life, timeout := int64(l.o.Interval), int64(l.o.Life), int64(l.o.Timeout)
	stagger := int64(l.o.Stagger)
	rng := rand.New(rand.NewPCG(1, 2))
	gap := func() int64 {
		g := int64(l.o.Gap)
		if l.o.GapJitter > 0 {
			g += rng.Int64N(int64(l.o.GapJitter))
		}
		return g
	}
	next, active, finished := 0, 0, 0
	var nextStart int64
	for finished < len(ks) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		now := monoNow()
		// Start knockers.
		for next < len(ks) && active < l.o.Concurrency && now >= nextStart {
			k := ks[next]
			if err := l.knock(k); err != nil {
				return nil, err
			}
			now = monoNow()
			k.state, k.nextAt, k.deadline = probing, now, k.s.KnockNS+timeout
			next, active = next+1, active+1
			nextStart = now + stagger
		}
		// Attempts, give-ups and expiries.
		wake := now + int64(time.Second)
		if next < len(ks) && active < l.o.Concurrency && nextStart < wake {
			wake = nextStart
		}
		for _, k := range ks[:next] {
			if k.state != probing {
				continue
			}
			if now >= k.deadline {
				k.state = done
				active--
				finished++
				l.closeAll(k)
				nextStart = max(nextStart, now+gap())
				continue
			}
			if now >= k.nextAt {
				if err := l.attempt(k, now); err != nil {
					return nil, err
				}
				k.nextAt = max(k.nextAt+interval, now+interval/2)
			}
			wake = min(wake, k.nextAt, k.deadline)
		}
		for fd, a := range l.live {
			if now-a.born >= life {
				l.drop(fd)
			} else {
				wake = min(wake, a.born+life)
			}
		}
		// Wait for a connection or the next event.
		n, err := epollPwait2(l.ep, l.evs, time.Duration(max(wake-monoNow(), 0)))
		if err != nil {
			return nil, err
		}
		at := monoNow()
		for _, ev := range l.evs[:n] {
			a, ok := l.live[ev.Fd]
			if !ok {
				continue
			}
			soErr, _ := unix.GetsockoptInt(int(ev.Fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if ev.Events&unix.EPOLLOUT != 0 && soErr == 0 && a.k.state == probing {
				k := a.k
				k.s.OK, k.s.ConnNS = true, at
				k.s.LatencyMS = float64(at-k.s.KnockNS) / 1e6
				k.state = done
				active--
				finished++
				l.closeAll(k)
				nextStart = max(nextStart, at+gap())
				continue
			}
			l.drop(ev.Fd) // refused, reset or late
		}
	}
	out := make([]sample, len(ks))
	for i, k := range ks {
		out[i] = k.s
	}
	return out, nil
}

// knock sends k's sequence, stamping the moment before the last knock.
func (l *loop) knock(k *knocker) error {
	for i, f := range k.frames {
		if i > 0 && l.o.KnockInterval > 0 {
			sleepPrecise(l.o.KnockInterval)
		}
		if i == len(k.frames)-1 {
			k.s.KnockNS = monoNow()
		}
		if n, err := l.tx.SendBatch([][]byte{f}); err != nil || n != 1 {
			return fmt.Errorf("knock from %s: sent %d: %w", k.src, n, err)
		}
	}
	return nil
}

// attempt starts one non-blocking connect from k's address.
func (l *loop) attempt(k *knocker, now int64) error {
	fam := unix.AF_INET
	var sa, la unix.Sockaddr
	if k.src.Is4() {
		sa = &unix.SockaddrInet4{Port: int(l.o.Port), Addr: l.o.Dst.As4()}
		la = &unix.SockaddrInet4{Addr: k.src.As4()}
	} else {
		fam = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(l.o.Port), Addr: l.o.Dst.As16()}
		la = &unix.SockaddrInet6{Addr: k.src.As16()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	// The port is picked at connect time, so thousands of attempts from one
	// address do not exhaust the ephemeral range.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, la); err != nil {
		unix.Close(fd)
		return fmt.Errorf("probe bind %s: %w", k.src, err)
	}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return fmt.Errorf("probe connect from %s: %w", k.src, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l.live[int32(fd)] = attempt{k: k, born: now}
	k.s.Attempts++
	return nil
}

func (l *loop) drop(fd int32) {
	delete(l.live, fd)
	unix.Close(int(fd)) // closing removes it from the epoll set
}

// closeAll drops k's attempts (every attempt when k is nil).
func (l *loop) closeAll(k *knocker) {
	for fd, a := range l.live {
		if k == nil || a.k == k {
			l.drop(fd)
		}
	}
}

func epollPwait2(ep int, evs []unix.EpollEvent, d time.Duration) (int, error) {
	ts := unix.NsecToTimespec(int64(d))
	n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])),
		uintptr(len(evs)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch errno {
	case 0:
		return int(n), nil
	case unix.EINTR: // a signal: the caller's loop looks at the clock again
		return 0, nil
	default:
		return 0, fmt.Errorf("epoll_pwait2: %w", errno)
	}
}

// sleepPrecise sleeps d on the calling (locked) thread with the kernel's
// high-resolution timer.
func sleepPrecise(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
