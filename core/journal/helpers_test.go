package journal

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

var t0 = time.Date(2026, 11, 27, 20, 0, 0, 123456789, time.UTC)

// rec builds a distinct, valid record; odd ones carry native ports.
func rec(i int) Record {
	r := Record{
		ID:       fmt.Sprintf("g%04d", i),
		Door:     "ssh",
		Source:   netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
		StopCmd:  fmt.Sprintf("iptables -D INPUT -s 10.0.%d.%d -p tcp --dport 22 -j ACCEPT", byte(i>>8), byte(i)),
		Start:    t0.Add(time.Duration(i) * time.Second),
		Deadline: t0.Add(time.Duration(i)*time.Second + 30*time.Second),
	}
	if i%2 == 0 {
		r.Timeout = 30 * time.Second
		r.StartPending = i%4 == 0
	}
	if i%2 == 1 {
		r.StopCmd = ""
		r.Open = []knock.Port{{Num: 22, Proto: knock.TCP}, {Num: 60000 + uint16(i%1000), Proto: knock.UDP}}
		r.Backend = "nftables"
		a := netip.MustParseAddr("fd77::").As16()
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)+1
		r.Source = netip.AddrFrom16(a)
	}
	return r
}

// testLogger sends journal messages to the test log, so a failing test
// shows what replay complained about.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "journal", Level: hclog.Trace, Output: tWriter{t}})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Helper(); w.t.Log(string(p)); return len(p), nil }

func mustOpen(t testing.TB, dir string) *Journal {
	t.Helper()
	j, err := Open(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func mustGrant(t testing.TB, j *Journal, r Record) {
	t.Helper()
	if err := j.Grant(r); err != nil {
		t.Fatalf("Grant(%s): %v", r.ID, err)
	}
}

func ids(rs []Record) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// samePending fails unless got equals want record for record.
func samePending(t testing.TB, what string, got, want []Record) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: pending\n got  %v\n want %v\n(got %+v)", what, ids(got), ids(want), got)
	}
}

func logPath(dir string) string { return filepath.Join(dir, LogName) }

func readLog(t testing.TB, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(logPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeLog(t testing.TB, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(logPath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// frameOffsets returns the start offset of every frame in a clean log.
func frameOffsets(t testing.TB, data []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(data); {
		_, _, n, reason := parseFrame(data[off:])
		if reason != "" {
			t.Fatalf("frameOffsets: bad frame at %d: %s", off, reason)
		}
		offs = append(offs, off)
		off += n
	}
	return offs
}

func mustReadPending(t testing.TB, dir string) []Record {
	t.Helper()
	rs, err := ReadPending(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
