// Package notifytest is the service manager's end of sd_notify(3), for
// tests: a unixgram socket for NOTIFY_SOCKET, and the datagrams a daemon
// or a Notifier sends to it. It does not interpret the messages.
package notifytest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Listen binds a unixgram socket in a fresh short temp dir (socket paths
// hold 108 bytes) and returns it and its path, for a child's
// NOTIFY_SOCKET. The test's cleanup closes and removes it.
func Listen(t testing.TB) (*net.UnixConn, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// Use is Listen with NOTIFY_SOCKET pointed at the socket for the rest of
// the test, for a Notifier in the test's own process. t.Setenv makes the
// test non-parallel, as it must be.
func Use(t *testing.T) *net.UnixConn {
	t.Helper()
	conn, path := Listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// Next returns the next datagram, or the read's error when none comes
// within d.
func Next(conn *net.UnixConn, d time.Duration) (string, error) {
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return "", err
	}
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
