package capture

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Under a flood, reading one frame per recvmsg(2) was most of a capture's
// cost (a profile of sesamed at 100k spoofed knocks per second: 45% of
// its CPU in that system call, another 16% in the scheduler). A
// batchReader takes up to readBatch queued frames per recvmmsg(2) and
// waits on the runtime's poller only when none is queued, so a lone
// knock is read as soon as it arrives, as before.

const (
	// readBatch is how many frames one system call may return.
	readBatch = 64
	// frameBuf is how much of each frame is read: the headers a knock is
	// decoded from, with room for VLAN tags and IPv6 extension headers.
	// The rest of a longer frame is cut off (the decoder reads truncated
	// frames), which the filter's whole-frame snap length would not do.
	frameBuf = 4096
)

// mmsghdr is struct mmsghdr (x/sys/unix does not define it).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batchReader reads frames from a packet socket in batches. It is used
// by one goroutine (Run's).
type batchReader struct {
	rc   syscall.RawConn
	buf  []byte // readBatch × frameBuf
	iovs []unix.Iovec
	msgs []mmsghdr
}

func newBatchReader(rc syscall.RawConn) *batchReader {
	r := &batchReader{rc: rc, buf: make([]byte, readBatch*frameBuf),
		iovs: make([]unix.Iovec, readBatch), msgs: make([]mmsghdr, readBatch)}
	for i := range r.msgs {
		r.iovs[i].Base = &r.buf[i*frameBuf]
		r.iovs[i].SetLen(frameBuf)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.Iovlen = 1
	}
	return r
}

// read waits until at least one frame is queued and returns how many it
// read; frame(i) is the i-th. A closed socket returns the poller's error.
func (r *batchReader) read() (int, error) {
	var n uintptr
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)),
				unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing queued: wait for the poller
			}
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// frame returns the i-th frame of the last read (valid until the next).
func (r *batchReader) frame(i int) []byte {
	return r.buf[i*frameBuf : i*frameBuf+min(int(r.msgs[i].len), frameBuf)]
}
