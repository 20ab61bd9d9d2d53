package rawsend

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bulk writes batches of Ethernet frames to one interface with
// sendmmsg(2) on an AF_PACKET socket: one system call per batch instead
// of one per frame, which is what lets one core reach flood rates. It is
// owned by one goroutine. Sender stays the tool for single crafted
// packets; this is its bulk sibling (sesame-bench's generator, capture
// benchmarks).
type Bulk struct {
	iface string
	fd    int
	mac   net.HardwareAddr
	sa    unix.RawSockaddrLinklayer
	msgs  []mmsghdr
	iovs  []unix.Iovec
}

// mmsghdr is struct mmsghdr (x/sys/unix does not define it).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// OpenBulk opens a send-only packet socket on iface in the calling
// thread's network namespace, for batches of up to batch frames.
func OpenBulk(iface string, batch int) (*Bulk, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("rawsend.OpenBulk: open %s: %w", iface, err)
	}
	// Protocol 0: never hooked into receive.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rawsend.OpenBulk: socket on %s: %w", iface, err)
	}
	// Bypassing the qdisc is what a traffic generator wants (pktgen does
	// the same); a veth has no queue to speak of anyway.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	s := &Bulk{iface: iface, fd: fd, mac: ifi.HardwareAddr,
		msgs: make([]mmsghdr, batch), iovs: make([]unix.Iovec, batch)}
	s.sa.Family = unix.AF_PACKET
	s.sa.Ifindex = int32(ifi.Index)
	s.sa.Halen = 6
	return s, nil
}

// MAC returns the interface's hardware address.
func (s *Bulk) MAC() net.HardwareAddr { return s.mac }

// SendBatch transmits frames (at most the batch size, all of one
// ethertype and destination MAC) and returns how many the kernel took.
func (s *Bulk) SendBatch(frames [][]byte) (int, error) {
	if len(frames) == 0 {
		return 0, nil
	}
	if len(frames) > len(s.msgs) {
		frames = frames[:len(s.msgs)]
	}
	f0 := frames[0]
	// sll_protocol is in network byte order; store the frame's ethertype
	// bytes as they are.
	s.sa.Protocol = *(*uint16)(unsafe.Pointer(&f0[12]))
	copy(s.sa.Addr[:], f0[0:6])
	for i, f := range frames {
		s.iovs[i].Base = &f[0]
		s.iovs[i].SetLen(len(f))
		m := &s.msgs[i].hdr
		m.Name = (*byte)(unsafe.Pointer(&s.sa))
		m.Namelen = uint32(unsafe.Sizeof(s.sa))
		m.Iov = &s.iovs[i]
		m.Iovlen = 1
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(frames)), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("sendmmsg on %s: %w", s.iface, errno)
	}
	return int(n), nil
}

// Close closes the socket.
func (s *Bulk) Close() error { return unix.Close(s.fd) }
