package capture

import (
	"errors"
	"os"
	"reflect"

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
// kernel granted. pcapgo keeps its socket unexported and offers no option
// for this, so the *os.File is reached through reflection; a gopacket
// release that renames the field makes this return an error, which Open
// logs through Stats rather than failing the capture, and a test notices.
func setReceiveBuffer(eth *pcapgo.EthernetHandle, size int) (int, error) {
	v := reflect.ValueOf(eth).Elem().FieldByName("file")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.Type() != reflect.TypeOf((*os.File)(nil)) {
		return 0, errors.New("pcapgo.EthernetHandle has no file field")
	}
	f := (*os.File)(v.UnsafePointer())
	rc, err := f.SyscallConn()
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
