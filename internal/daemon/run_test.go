package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// The whole daemon, without root: its services start in order over fake
// captures and a recording firewall, a knock on the fake capture becomes
// a native grant, the control socket answers, and cancelling the context
// stops everything in reverse (the firewall, which does not keep its
// objects over a stop, is torn down last of what the knock touched).
func TestRunWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "sesame.conf")
	logFile := filepath.Join(dir, "knockd.log")
	os.WriteFile(conf, []byte("[ssh]\nsequence = 7000,8000\nopen = 22/tcp\n"), 0o600)
	fw := &recordingFirewall{granted: make(chan string, 1)}
	opened := make(chan *fakeCapture, 1)
	dp := fakeDeps(fw, opened)
	dp.listen = control.Listen
	var stderr syncbuf.Buffer
	opts := Options{ConfigPath: conf, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "ctl.sock"),
		Interfaces: []string{"lo"}, Stderr: &stderr, LogFile: logFile, Version: "test"}
	notify := notifytest.Use(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts, dp) }()

	// Every service has started once READY=1 is sent.
	var state string
	for !strings.Contains(state, "READY=1") {
		if state = nextDatagram(t, notify); strings.HasPrefix(state, "STOPPING=1") {
			t.Fatalf("stopping before ready:\n%s", stderr.String())
		}
	}
	c := <-opened
	loopback := netip.MustParseAddr("127.0.0.1")
	src := netip.MustParseAddr("192.0.2.9")
	for _, p := range []uint16{7000, 8000} {
		c.packets <- knock.Packet{Src: src, Dst: loopback, Port: p, Proto: knock.TCP, Flags: knock.SYN}
	}
	select {
	case got := <-fw.granted:
		if got != src.String() {
			t.Errorf("granted %s, want %s", got, src)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no native grant after the knock:\n%s", stderr.String())
	}
	if spec := c.filter(); !strings.Contains(knock.FormatSequence(spec.Ports), "7000:tcp,8000:tcp") {
		t.Errorf("capture filter %+v lacks the knock ports", spec)
	}

	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", opts.Socket)
	}}}
	resp, err := hc.Get("http://sesamed/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st control.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Version != "test" || st.Grants != 1 || len(st.Doors) != 1 {
		t.Errorf("status %+v, %v", st, err)
	}

	cancel()
	for !strings.Contains(state, "STOPPING=1") {
		state = nextDatagram(t, notify)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if got := strings.Join(fw.allCalls(), ","); got != "setup 22:tcp,grant 192.0.2.9,teardown" {
		t.Errorf("firewall calls %s", got)
	}
	b, _ := os.ReadFile(logFile)
	lines := string(b)
	last := -1
	for _, want := range []string{"starting up, listening on lo", "192.0.2.9: ssh: Stage 1", "192.0.2.9: ssh: OPEN SESAME", "shutting down"} {
		i := strings.Index(lines, want)
		if i < last {
			t.Errorf("LogFile lacks %q after the lines before it:\n%s", want, lines)
		}
		last = i
	}
	if _, err := os.Stat(opts.Socket); err == nil {
		if _, err := net.Dial("unix", opts.Socket); err == nil {
			t.Error("the control socket still answers after run returned")
		}
	}
	if _, err := os.Stat(lastGoodPath(opts.StateDir)); err != nil {
		t.Errorf("no last good config: %v", err)
	}
}

// nextDatagram returns the next sd_notify datagram; the test fails when
// none comes within 30 s.
func nextDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	s, err := notifytest.Next(conn, 30*time.Second)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v", err)
	}
	return s
}
