package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Printed measurements of the daemon's life cycle (go test -bench): how
// long a start takes to READY=1, and a config edit to the new door
// working. They assert nothing about time.

// BenchmarkStartToReady: exec to the READY=1 datagram on NOTIFY_SOCKET.
func BenchmarkStartToReady(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.NewPair(b).Server
	dir := b.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	conf := filepath.Join(dir, "sesame.conf")
	os.WriteFile(conf, []byte(baseConf), 0o600)
	buf := make([]byte, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := ns.Command("env", "NOTIFY_SOCKET="+sock, bin("sesamed"), "-c", conf, "--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "c.sock"))
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				b.Fatalf("no READY=1: %v", err)
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				break
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms-to-ready")
		b.StopTimer()
		cmd.Process.Signal(sigTERM)
		cmd.Wait()
		b.StartTimer()
	}
}

// BenchmarkConfigEditToDoorActive: a rename-replace of the config adding
// a door, to the daemon logging the new config in force (this includes
// the watcher's 200 ms debounce).
func BenchmarkConfigEditToDoorActive(b *testing.B) {
	netnstest.RequireRoot(b)
	p := netnstest.NewPair(b)
	d := startSesamed(b, p.Server, baseConf)
	path := filepath.Join(d.dir, "sesame.conf")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := fmt.Sprintf("config reloaded: %d doors", 3+i%2)
		conf := expand(baseConf, d.dir) + fmt.Sprintf("[new%d]\nsequence = %d\n", i, 10000+i)
		if i%2 == 1 {
			conf += "[extra]\nsequence = 20000\n"
		}
		before := strings.Count(d.out.String(), "config reloaded:")
		tmp := path + ".tmp"
		os.WriteFile(tmp, []byte(conf), 0o600)
		start := time.Now()
		os.Rename(tmp, path)
		if !poll(10*time.Second, func() bool {
			out := d.out.String()
			return strings.Count(out, "config reloaded:") > before && strings.Contains(out[strings.LastIndex(out, "config reloaded:")-1:], want)
		}) {
			b.Fatalf("edit %d not applied; output:\n%s", i, d.out.String())
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms-to-active")
	}
}
