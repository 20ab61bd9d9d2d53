// Package capture owns the packet path from the kernel to the matcher: an
// AF_PACKET capture handle on one interface, the kernel filter that keeps
// everything but candidate knocks in the kernel, and a zero-allocation
// decoder that turns a frame into a knock.Packet. It does not know about
// doors, sequences or timeouts; it only delivers packets whose destination
// address and port/protocol are in the FilterSpec it was given, and the
// UDP datagrams to its datagram ports (SPA packets) with their payloads,
// which it does not read.
//
// The kernel filter is an eBPF socket filter that looks the spec up in
// hash maps: exact for any number of ports and addresses, and updated in
// place when the spec changes. Where the kernel refuses eBPF (no CAP_BPF
// or CAP_SYS_ADMIN, bpf(2) denied by a seccomp filter, an old kernel) a
// classic BPF program takes its place: exact when it fits the kernel's
// limits, coarser for a larger spec. Either way the user-space check,
// which is always exact, drops what the kernel let by.
package capture
