package firewall

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// nftGen returns the nf_tables ruleset generation of the calling thread's
// network namespace. The kernel adds one for every committed nf_tables
// transaction, whoever made it (an iptables-nft command that changed
// something, nft, firewalld), and never for a read, so the iptables-nft
// backend knows its view of its chain is still exact when the generation
// is the one its own last command left. It costs one netlink round trip
// on a fresh socket, tens of microseconds (BenchmarkNFTGen).
func nftGen() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: socket: %w", err)
	}
	defer unix.Close(fd)
	// The kernel answers within the send; the timeout only bounds a
	// kernel that does not.
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	const seq = 1
	if err := unix.Sendto(fd, genRequest(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("nf_tables generation: send: %w", err)
	}
	buf := make([]byte, 256)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: receive: %w", err)
	}
	g, err := parseGenReply(buf[:n], seq)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	return g, nil
}
