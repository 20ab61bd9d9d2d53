package rawsend

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"github.com/gopacket/gopacket/endian"
	"golang.org/x/sys/unix"
)

// Sender writes frames to one interface through an AF_PACKET socket. Its
// socket lives in the network namespace it was opened in, whichever
// thread later calls Send. Send and Close are safe for concurrent use.
type Sender struct {
	iface   string
	ifindex int
	mac     net.HardwareAddr

	mu sync.Mutex // guards fd; -1 once closed
	fd int
}

// Open opens a send-only packet socket on iface in the calling thread's
// network namespace. It needs CAP_NET_RAW.
func Open(iface string) (*Sender, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("rawsend.Open %s: %w", iface, err)
	}
	// Protocol 0: the socket is not hooked into receive, so it never
	// queues a copy of the traffic it is not going to read.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rawsend.Open %s: socket: %w", iface, err)
	}
	return &Sender{iface: iface, ifindex: ifi.Index, mac: ifi.HardwareAddr, fd: fd}, nil
}

// MAC returns the interface's hardware address (nil on loopback).
func (s *Sender) MAC() net.HardwareAddr { return s.mac }

// Send builds spec's frame (SrcMAC defaults to the interface's address)
// and transmits it on the interface.
func (s *Sender) Send(spec Spec) error {
	if spec.SrcMAC == nil {
		spec.SrcMAC = s.mac
	}
	frame, err := Frame(spec)
	if err != nil {
		return err
	}
	return s.SendFrame(frame)
}

// SendFrame transmits a frame exactly as given.
func (s *Sender) SendFrame(frame []byte) error {
	if len(frame) < 14 {
		return fmt.Errorf("rawsend: send on %s: frame of %d bytes is shorter than an Ethernet header", s.iface, len(frame))
	}
	sa := &unix.SockaddrLinklayer{
		Ifindex:  s.ifindex,
		Protocol: endian.Htons(binary.BigEndian.Uint16(frame[12:14])),
		Halen:    6,
	}
	copy(sa.Addr[:], frame[0:6])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return fmt.Errorf("rawsend: send on %s: %w", s.iface, net.ErrClosed)
	}
	if err := unix.Sendto(s.fd, frame, 0, sa); err != nil {
		return fmt.Errorf("rawsend: send on %s: %w", s.iface, err)
	}
	return nil
}

// Close closes the socket; calling it again does nothing.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("rawsend: close %s: %w", s.iface, err)
	}
	return nil
}
