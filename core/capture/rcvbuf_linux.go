package capture

import (
	"errors"
	"os"
	"reflect"
	"syscall"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// ReceiveBuffer is the socket receive buffer a Handle asks for. The
// kernel default (net.core.rmem_default, about 208 KiB) holds some 270
// small frames: at 100k packets/s that is under 3 ms, so a reader
// descheduled for longer under a flood would drop a real knock with the
// spoofed ones. 8 MiB rides out about 100 ms.
const ReceiveBuffer = 8 << 20

// setReceiveBuffer sets eth's SO_RCVBUF, past net.core.rmem_max with
// SO_RCVBUFFORCE when the process has CAP_NET_ADMIN, and returns what the
// kernel granted. pcapgo offers no option for this (see socketConn); an
// error is reported through Stats rather than failing the capture.
func setReceiveBuffer(eth *pcapgo.EthernetHandle, size int) (int, error) {
	rc, err := socketConn(eth)
	if err != nil {
		return 0, err
	}
	got := 0
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if cerr != nil {
		return 0, cerr
	}
	return got, serr
}

// socketConn reaches eth's packet socket, which pcapgo keeps in an
// unexported *os.File: for the receive buffer and for an eBPF filter,
// neither of which pcapgo offers. A gopacket release that renames the
// field makes this an error (the capture then runs without either), and
// a test notices.
func socketConn(eth *pcapgo.EthernetHandle) (syscall.RawConn, error) {
	v := reflect.ValueOf(eth).Elem().FieldByName("file")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.Type() != reflect.TypeOf((*os.File)(nil)) {
		return nil, errors.New("pcapgo.EthernetHandle has no file field")
	}
	return (*os.File)(v.UnsafePointer()).SyscallConn()
}
