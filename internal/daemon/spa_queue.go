package daemon

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The hand-off of SPA datagrams from the captures to their verifier:
// the captures' goroutines copy each payload into a fixed slot and go
// back to reading at once; one goroutine per kind of packet (fwknop,
// SSH-signed) verifies them. Nothing is allocated on the way. The slots
// are split into lanes by the packet's source, served in turn: a flood
// from one source (an IPv4 address or an IPv6 /64) fills its own lane
// and is dropped there, and a real packet from elsewhere waits behind
// at most one packet per other busy lane. Under a flood from spoofed
// sources spread over every lane, a real packet gets in as long as the
// verifier keeps up (a garbage packet costs one HMAC); past that, each
// lane drops what it cannot hold, counted.
const (
	// maxDatagram is fwknop's MAX_SPA_PACKET_LEN; SSH-signed knocks are
	// at most 1200 bytes. Longer datagrams are not SPA packets.
	maxDatagram = 1500
	queueLanes  = 16
	laneDepth   = 32
)

// dgram is one queued datagram.
type dgram struct {
	src, dst netip.Addr
	n        int
	buf      [maxDatagram]byte
}

func (d *dgram) payload() []byte { return d.buf[:d.n] }

type lane struct {
	slots   [laneDepth]dgram
	head, n int // slots[head] is the oldest of n queued
}

// dgramQueue is filled by any number of producers (put) and drained by
// one consumer (next, then done).
type dgramQueue struct {
	seed maphash.Seed
	// wake has a token when put added a datagram since the consumer last
	// found the queue empty.
	wake chan struct{}
	// dropped counts datagrams a full lane refused; oversize those longer
	// than maxDatagram.
	dropped, oversize atomic.Uint64

	mu    sync.Mutex // guards lanes, turn and cur
	lanes [queueLanes]lane
	turn  int   // the lane next asks first
	cur   *lane // the lane of the datagram the consumer holds; nil when none
}

func newDgramQueue() *dgramQueue {
	return &dgramQueue{seed: maphash.MakeSeed(), wake: make(chan struct{}, 1)}
}

// laneOf is the lane of packets from src: by its address, an IPv6
// source by its /64.
func (q *dgramQueue) laneOf(src netip.Addr) int {
	a := src.Unmap().As16()
	n := 16
	if !src.Unmap().Is4() {
		n = 8
	}
	return int(maphash.Bytes(q.seed, a[:n]) % queueLanes)
}

// put queues a copy of payload from src to dst and reports whether
// there was room. It never blocks on the consumer.
func (q *dgramQueue) put(src, dst netip.Addr, payload []byte) bool {
	if len(payload) > maxDatagram {
		q.oversize.Add(1)
		return false
	}
	l := &q.lanes[q.laneOf(src)]
	q.mu.Lock()
	if l.n == laneDepth {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false
	}
	d := &l.slots[(l.head+l.n)%laneDepth]
	d.src, d.dst, d.n = src, dst, copy(d.buf[:], payload)
	l.n++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// next returns the oldest datagram of the next lane that has one, nil
// when the queue is empty. The datagram is the consumer's until it
// calls done; producers never write its slot meanwhile.
func (q *dgramQueue) next() *dgram {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := 0; i < queueLanes; i++ {
		l := &q.lanes[(q.turn+i)%queueLanes]
		if l.n > 0 {
			q.turn = (q.turn + i + 1) % queueLanes
			q.cur = l
			return &l.slots[l.head]
		}
	}
	return nil
}

// done releases the datagram next returned.
func (q *dgramQueue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.cur; l != nil {
		l.head = (l.head + 1) % laneDepth
		l.n--
		q.cur = nil
	}
}

// queued is how many datagrams wait (for tests and status).
func (q *dgramQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for i := range q.lanes {
		n += q.lanes[i].n
	}
	return n
}
