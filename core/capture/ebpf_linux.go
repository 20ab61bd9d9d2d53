package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ebpfFilter is the eBPF socket filter of one Handle: its program and the
// maps the program looks the spec up in. The maps are sized at creation
// (twice what the spec needs, at least minMapEntries) and updated in
// place by update while the spec fits them; a spec that outgrows them
// needs a new ebpfFilter, attached in place of the old one (the kernel
// swaps a socket's filter atomically). The counts map moves from one
// ebpfFilter to the next, so the counters run on. An ebpfFilter is used
// by one goroutine at a time (Handle.filterMu).
type ebpfFilter struct {
	prog              *ebpf.Program
	ports, dst4, dst6 *ebpf.Map
	counts            *ebpf.Map
	ownCounts         bool // close counts with the filter
	insns             int

	// What the maps hold, to update them by difference.
	curPorts, cur4 map[uint32]struct{}
	cur6           map[[4]uint32]struct{}
}

// minMapEntries is the smallest capacity of a map: small specs change
// without a new filter, and an empty map costs little (entries are
// allocated as they are added: BPF_F_NO_PREALLOC).
const minMapEntries = 256

// mapCapacity is the room a map gets for n entries.
func mapCapacity(n int) uint32 {
	if n < minMapEntries/2 {
		return minMapEntries
	}
	return 1 << bits.Len(uint(2*n-1))
}

// ebpfKeys are n's entries as the program builds them (see ebpf_prog.go).
func ebpfKeys(n normSpec) (ports, v4 []uint32, v6 [][4]uint32) {
	for _, p := range n.tcp {
		ports = append(ports, 6<<16|uint32(p))
	}
	for _, p := range n.udp {
		ports = append(ports, 17<<16|uint32(p))
	}
	v4 = append(v4, n.dst4...)
	for _, a := range n.dst6 {
		var k [4]uint32
		for w := range k {
			k[w] = binary.BigEndian.Uint32(a[4*w:])
		}
		v6 = append(v6, k)
	}
	return ports, v4, v6
}

// newEBPFFilter creates the maps for n, fills them, and loads the program
// for link. counts, when not nil, is the counters map of the filter this
// one replaces.
func newEBPFFilter(link LinkType, n normSpec, counts *ebpf.Map) (f *ebpfFilter, err error) {
	ports, v4, v6 := ebpfKeys(n)
	f = &ebpfFilter{counts: counts,
		curPorts: map[uint32]struct{}{}, cur4: map[uint32]struct{}{}, cur6: map[[4]uint32]struct{}{}}
	defer func() {
		if err != nil {
			f.close()
			f = nil
		}
	}()
	newHash := func(name string, keySize uint32, n int) (*ebpf.Map, error) {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Hash, KeySize: keySize, ValueSize: 1,
			MaxEntries: mapCapacity(n), Flags: unix.BPF_F_NO_PREALLOC})
		if errors.Is(err, unix.EPERM) {
			// The first bpf(2) call: say what it takes rather than
			// cilium/ebpf's guess (a memlock limit, true only before 5.11).
			return nil, fmt.Errorf("capture: eBPF not permitted (it needs CAP_BPF, or CAP_SYS_ADMIN before Linux 5.8, and bpf(2) allowed by any seccomp filter): %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("capture: eBPF map %s: %w", name, err)
		}
		return m, nil
	}
	if f.ports, err = newHash("sesame_ports", 4, len(ports)); err != nil {
		return f, err
	}
	if f.dst4, err = newHash("sesame_dst4", 4, len(v4)); err != nil {
		return f, err
	}
	if f.dst6, err = newHash("sesame_dst6", 16, len(v6)); err != nil {
		return f, err
	}
	if f.counts == nil {
		f.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sesame_counts", Type: ebpf.PerCPUArray,
			KeySize: 4, ValueSize: 8, MaxEntries: numCounts})
		if err != nil {
			return f, fmt.Errorf("capture: eBPF map sesame_counts: %w", err)
		}
		f.ownCounts = true
	}
	if err := f.update(n); err != nil {
		return f, err
	}
	insns, err := ebpfProgram(link, ebpfMapFDs{ports: f.ports.FD(), dst4: f.dst4.FD(), dst6: f.dst6.FD(), counts: f.counts.FD()})
	if err != nil {
		return f, err
	}
	f.insns = len(insns)
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "sesame_knocks", Type: ebpf.SocketFilter,
		Instructions: insns, License: "MIT"})
	if err != nil {
		return f, fmt.Errorf("capture: load eBPF filter: %w", err)
	}
	return f, nil
}

// fits reports whether n fits the maps as they were sized.
func (f *ebpfFilter) fits(n normSpec) bool {
	return len(n.tcp)+len(n.udp) <= int(f.ports.MaxEntries()) &&
		len(n.dst4) <= int(f.dst4.MaxEntries()) && len(n.dst6) <= int(f.dst6.MaxEntries())
}

// update makes the maps hold n: stale entries out first, so that a spec
// that fits the maps always fits while they change (a knock on a stale
// entry is dropped in user space anyway), then the new ones. On an error
// the maps hold part of the change; the caller must not keep relying on
// them.
func (f *ebpfFilter) update(n normSpec) error {
	ports, v4, v6 := ebpfKeys(n)
	if err := syncMap(f.ports, f.curPorts, ports); err != nil {
		return fmt.Errorf("capture: eBPF ports map: %w", err)
	}
	if err := syncMap(f.dst4, f.cur4, v4); err != nil {
		return fmt.Errorf("capture: eBPF IPv4 map: %w", err)
	}
	if err := syncMap(f.dst6, f.cur6, v6); err != nil {
		return fmt.Errorf("capture: eBPF IPv6 map: %w", err)
	}
	return nil
}

// syncMap brings m (whose keys are cur) to want, and cur with it.
func syncMap[K comparable](m *ebpf.Map, cur map[K]struct{}, want []K) error {
	keep := make(map[K]struct{}, len(want))
	var add []K
	for _, k := range want {
		keep[k] = struct{}{}
		if _, ok := cur[k]; !ok {
			add = append(add, k)
		}
	}
	var del []K
	for k := range cur {
		if _, ok := keep[k]; !ok {
			del = append(del, k)
		}
	}
	if len(del) > 0 {
		if _, err := m.BatchDelete(del, nil); errors.Is(err, ebpf.ErrNotSupported) {
			for _, k := range del {
				if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
			}
		} else if err != nil {
			return err
		}
		for _, k := range del {
			delete(cur, k)
		}
	}
	if len(add) > 0 {
		ones := make([]uint8, len(add))
		for i := range ones {
			ones[i] = 1
		}
		if _, err := m.BatchUpdate(add, ones, nil); errors.Is(err, ebpf.ErrNotSupported) {
			for _, k := range add {
				if err := m.Put(k, uint8(1)); err != nil {
					return err
				}
			}
		} else if err != nil {
			return err
		}
		for _, k := range add {
			cur[k] = struct{}{}
		}
	}
	return nil
}

// attachTo puts the program on the socket fd (SO_ATTACH_BPF), replacing
// whatever filter it had.
func (f *ebpfFilter) attachTo(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, f.prog.FD()); err != nil {
		return fmt.Errorf("capture: attach eBPF filter: setsockopt SO_ATTACH_BPF: %w", err)
	}
	return nil
}

// succeed makes f own the counters map it shares with old, the filter
// it replaced on the socket; old may then be closed.
func (f *ebpfFilter) succeed(old *ebpfFilter) {
	if old != nil && old.counts == f.counts {
		f.ownCounts, old.ownCounts = old.ownCounts, false
	}
}

// read sums the per-CPU counters.
func (f *ebpfFilter) read() (dropped, kept uint64, err error) {
	for slot, out := range map[uint32]*uint64{countDropped: &dropped, countKept: &kept} {
		var per []uint64
		if err := f.counts.Lookup(slot, &per); err != nil {
			return 0, 0, fmt.Errorf("capture: eBPF counters: %w", err)
		}
		for _, v := range per {
			*out += v
		}
	}
	return dropped, kept, nil
}

// close releases the program and maps (a socket the program is attached
// to keeps its own reference).
func (f *ebpfFilter) close() {
	if f.prog != nil {
		f.prog.Close()
	}
	for _, m := range []*ebpf.Map{f.ports, f.dst4, f.dst6} {
		if m != nil {
			m.Close()
		}
	}
	if f.ownCounts && f.counts != nil {
		f.counts.Close()
	}
}
