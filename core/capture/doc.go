// Package capture owns the packet path from the kernel to the matcher: an
// AF_PACKET capture handle on one interface, the classic BPF program that
// keeps everything but candidate knocks in the kernel, and a zero-allocation
// decoder that turns a frame into a knock.Packet. It does not know about
// doors, sequences or timeouts; it only delivers packets whose destination
// address and port/protocol are in the FilterSpec it was given.
//
// The kernel program checks the spec exactly when it fits; a larger spec
// (thousands of ports or addresses) gets a coarser program within the
// kernel's limits, and the user-space check, which is always exact, drops
// what the program let by.
package capture
