package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sesame-knock/sesame/core/knock"
)

// Traffic kinds the generator sends. Every packet's destination is the
// server's namespace address; spoofed sources come from a prefix that
// exists only inside the bench's namespaces.
const (
	modeKnock      = "knock"       // valid sequences from the real sources, one after the other
	modeNoise      = "noise"       // TCP SYN and UDP to ports no door uses, spoofed sources
	modeFloodFirst = "flood-first" // first knocks of the sequence, a new spoofed source each
	modeFloodWrong = "flood-wrong" // later-stage knocks from spoofed sources with no attempt
	// modeFloodReplay replays the full sequence from replaySources spoofed
	// sources in turn, as someone who saw one knock on the wire would:
	// each source opens the door once and then extends its grant with
	// every sequence.
	modeFloodReplay = "flood-replay"
	// modeFloodOpen sends the one knock of a one-port door from a new
	// spoofed source each time: every packet is an open.
	modeFloodOpen = "flood-open"
)

// replaySources is how many spoofed sources replay a sequence.
const replaySources = 50

var modes = []string{modeKnock, modeNoise, modeFloodFirst, modeFloodWrong, modeFloodReplay, modeFloodOpen}

// pkt is one generated packet, before framing.
type pkt struct {
	src          netip.Addr
	sport, dport uint16
	proto        knock.Proto
}

// stream says what packet number i is. It is pure: the same i always
// gives the same packet, so runs are reproducible and identical for
// every daemon under test.
type stream struct {
	mode  string
	seq   []knock.Port   // the door's sequence
	real  []netip.Addr   // modeKnock sources
	spoof netip.Prefix   // other modes' sources
	avoid *[1 << 16]bool // ports noise never hits (knock ports, the protected port)
}

func newStream(mode string, seq []knock.Port, real []netip.Addr, spoof netip.Prefix, avoid []uint16) (*stream, error) {
	s := &stream{mode: mode, seq: seq, real: real, spoof: spoof.Masked(), avoid: new([1 << 16]bool)}
	switch mode {
	case modeKnock:
		if len(real) == 0 {
			return nil, fmt.Errorf("stream %s: no sources", mode)
		}
	case modeNoise, modeFloodFirst, modeFloodWrong, modeFloodReplay, modeFloodOpen:
		if !spoof.IsValid() {
			return nil, fmt.Errorf("stream %s: no spoof prefix", mode)
		}
	default:
		return nil, fmt.Errorf("stream: unknown mode %q (one of %v)", mode, modes)
	}
	if len(seq) == 0 || (mode == modeFloodWrong && len(seq) < 2) {
		return nil, fmt.Errorf("stream %s: sequence %s too short", mode, knock.FormatSequence(seq))
	}
	for _, p := range avoid {
		s.avoid[p] = true
	}
	for _, p := range seq {
		s.avoid[p.Num] = true
	}
	if mode == modeNoise && !slices.Contains(s.avoid[1:], false) {
		return nil, fmt.Errorf("stream %s: every port is to be avoided", mode)
	}
	return s, nil
}

// count is how many packets one pass of the stream holds (0: unbounded).
func (s *stream) count() uint64 {
	if s.mode == modeKnock {
		return uint64(len(s.real) * len(s.seq))
	}
	return 0
}

func (s *stream) packet(i uint64) pkt {
	sport := uint16(20000 + i%40000)
	switch s.mode {
	case modeKnock:
		n := uint64(len(s.seq))
		k := s.seq[i%n]
		return pkt{src: s.real[(i/n)%uint64(len(s.real))], sport: sport, dport: k.Num, proto: k.Proto}
	case modeFloodFirst, modeFloodOpen:
		return pkt{src: s.spoofed(i), sport: sport, dport: s.seq[0].Num, proto: s.seq[0].Proto}
	case modeFloodReplay:
		n := uint64(len(s.seq))
		k := s.seq[i%n]
		return pkt{src: s.spoofed((i / n) % replaySources), sport: sport, dport: k.Num, proto: k.Proto}
	case modeFloodWrong:
		k := s.seq[1+i%uint64(len(s.seq)-1)]
		return pkt{src: s.spoofed(i), sport: sport, dport: k.Num, proto: k.Proto}
	default: // noise
		proto := knock.TCP
		if i%2 == 1 {
			proto = knock.UDP
		}
		// 7919 is prime to 65535, so the ports cycle through all of 1-65535.
		port := uint16(1 + (i*7919)%65535)
		for s.avoid[port] {
			port++
			if port == 0 {
				port = 1
			}
		}
		return pkt{src: s.spoofed(i), sport: sport, dport: port, proto: proto}
	}
}

// spoofed returns the i-th spoofed source: a permutation of the host
// part of the prefix (an odd multiplier is a bijection modulo a power of
// two), so consecutive packets come from scattered, distinct addresses
// until the prefix is exhausted.
func (s *stream) spoofed(i uint64) netip.Addr {
	bits := s.spoof.Addr().BitLen() - s.spoof.Bits()
	if bits > 64 {
		bits = 64
	}
	h := i * 0x9E3779B97F4A7C15
	if bits < 64 {
		h &= 1<<bits - 1
	}
	if s.spoof.Addr().Is4() {
		a := s.spoof.Addr().As4()
		v := binary.BigEndian.Uint32(a[:]) | uint32(h)
		binary.BigEndian.PutUint32(a[:], v)
		return netip.AddrFrom4(a)
	}
	a := s.spoof.Addr().As16()
	v := binary.BigEndian.Uint64(a[8:]) | h
	binary.BigEndian.PutUint64(a[8:], v)
	return netip.AddrFrom16(a)
}
