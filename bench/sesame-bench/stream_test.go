package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestStream(t *testing.T) {
	seq, err := knock.ParseSequence("7000,8000,9000:udp")
	if err != nil {
		t.Fatal(err)
	}
	real := []netip.Addr{netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("10.77.1.2")}
	p4, p6 := netip.MustParsePrefix("10.128.0.0/10"), netip.MustParsePrefix("fd78::/64")
	const n = 1 << 16
	tests := []struct {
		name  string
		mode  string
		spoof netip.Prefix
		check func(t *testing.T, i uint64, p pkt)
		// distinct is how many distinct sources the first n packets must have.
		distinct int
	}{
		{"knock", modeKnock, netip.Prefix{}, func(t *testing.T, i uint64, p pkt) {
			k := seq[i%3]
			if p.src != real[(i/3)%2] || p.dport != k.Num || p.proto != k.Proto {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, 2},
		{"flood-first v4", modeFloodFirst, p4, func(t *testing.T, i uint64, p pkt) {
			if !p4.Contains(p.src) || p.dport != 7000 || p.proto != knock.TCP {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, n},
		{"flood-first v6", modeFloodFirst, p6, func(t *testing.T, i uint64, p pkt) {
			if !p6.Contains(p.src) || p.dport != 7000 {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, n},
		{"flood-wrong", modeFloodWrong, p4, func(t *testing.T, i uint64, p pkt) {
			k := seq[1+i%2]
			if !p4.Contains(p.src) || p.dport != k.Num || p.proto != k.Proto {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, n},
		{"flood-replay", modeFloodReplay, p4, func(t *testing.T, i uint64, p pkt) {
			// Full sequences, one source at a time, 50 sources in turn.
			k := seq[i%3]
			if !p4.Contains(p.src) || p.dport != k.Num || p.proto != k.Proto {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, replaySources},
		{"flood-open", modeFloodOpen, p4, func(t *testing.T, i uint64, p pkt) {
			if !p4.Contains(p.src) || p.dport != 7000 {
				t.Fatalf("packet %d: %+v", i, p)
			}
		}, n},
		{"noise", modeNoise, p4, func(t *testing.T, i uint64, p pkt) {
			if !p4.Contains(p.src) || slices.Contains([]uint16{7000, 8000, 9000, 2222}, p.dport) || p.dport == 0 {
				t.Fatalf("packet %d hits a knock or protected port: %+v", i, p)
			}
		}, n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newStream(tc.mode, seq, real, tc.spoof, []uint16{2222})
			if err != nil {
				t.Fatal(err)
			}
			srcs := map[netip.Addr]bool{}
			for i := uint64(0); i < n; i++ {
				p := s.packet(i)
				tc.check(t, i, p)
				srcs[p.src] = true
				if s.packet(i) != p {
					t.Fatalf("packet %d differs between calls", i)
				}
			}
			if len(srcs) != tc.distinct {
				t.Fatalf("%d distinct sources in %d packets, want %d", len(srcs), n, tc.distinct)
			}
		})
	}
}

func TestStreamNoiseCoversPorts(t *testing.T) {
	seq, _ := knock.ParseSequence("7000,8000,9000")
	s, err := newStream(modeNoise, seq, nil, netip.MustParsePrefix("10.128.0.0/10"), []uint16{2222})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for i := uint64(0); i < 65535; i++ {
		seen[s.packet(i).dport] = true
	}
	if len(seen) < 65535-4 {
		t.Fatalf("noise hit %d distinct ports in 65535 packets", len(seen))
	}
}

func TestStreamErrors(t *testing.T) {
	seq, _ := knock.ParseSequence("7000,8000")
	one, _ := knock.ParseSequence("7000")
	p := netip.MustParsePrefix("10.128.0.0/10")
	for _, tc := range []struct {
		name string
		mode string
		seq  []knock.Port
		real []netip.Addr
		sp   netip.Prefix
	}{
		{"unknown mode", "storm", seq, nil, p},
		{"knock without sources", modeKnock, seq, nil, p},
		{"flood without prefix", modeFloodFirst, seq, nil, netip.Prefix{}},
		{"wrong-stage needs two stages", modeFloodWrong, one, nil, p},
		{"empty sequence", modeNoise, nil, nil, p},
	} {
		if _, err := newStream(tc.mode, tc.seq, tc.real, tc.sp, nil); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// A replay sends whole sequences, each from one source, the sources in
// turn.
func TestStreamReplay(t *testing.T) {
	seq, _ := knock.ParseSequence("7000,8000,9000")
	s, err := newStream(modeFloodReplay, seq, nil, netip.MustParsePrefix("10.128.0.0/10"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 3*replaySources*4; i += 3 {
		a := s.packet(i).src
		if s.packet(i+1).src != a || s.packet(i+2).src != a {
			t.Fatalf("sequence at %d from more than one source", i)
		}
		if s.packet(i+3).src == a {
			t.Fatalf("sequences at %d and %d from one source", i, i+3)
		}
		if s.packet(i+3*replaySources).src != a {
			t.Fatalf("source of sequence %d not back after %d sources", i/3, replaySources)
		}
	}
}

// Noise avoids every listed port, however many (the capture rows avoid a
// config's 10,000 knock ports), and still reaches the others.
func TestStreamNoiseAvoidsManyPorts(t *testing.T) {
	seq, _ := knock.ParseSequence("7000")
	var avoid []uint16
	for p := uint16(1024); p < 1024+10000; p++ {
		avoid = append(avoid, p)
	}
	s, err := newStream(modeNoise, seq, nil, netip.MustParsePrefix("10.128.0.0/10"), avoid)
	if err != nil {
		t.Fatal(err)
	}
	hit := map[uint16]bool{}
	for i := uint64(0); i < 200000; i++ {
		p := s.packet(i)
		if p.dport >= 1024 && p.dport < 1024+10000 || p.dport == 7000 || p.dport == 0 {
			t.Fatalf("packet %d to avoided port %d", i, p.dport)
		}
		hit[p.dport] = true
	}
	if want := 65535 - 10000; len(hit) != want { // 7000 is among the avoided
		t.Errorf("noise reached %d ports, want all %d others", len(hit), want)
	}
	all := make([]uint16, 0, 65535)
	for p := 1; p < 1<<16; p++ {
		all = append(all, uint16(p))
	}
	if _, err := newStream(modeNoise, seq, nil, netip.MustParsePrefix("10.128.0.0/10"), all); err == nil {
		t.Error("noise with every port avoided: no error")
	}
}
