package fwknoptest

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// Offline runs fwknopd in test mode (-t: it checks packets but changes
// no firewall) over dgrams written to a pcap file, inside a namespace of
// its own, and returns its verbose output. Each datagram fwknopd accepts
// leaves a line "[SRC] (stanza #N) --test mode enabled, skipping firewall
// manipulation." (see Accepted).
func Offline(tb testing.TB, access string, dgrams []Datagram) string {
	tb.Helper()
	ns := netnstest.NewNS(tb, "fwknopd")
	dir := tb.TempDir()
	conf, acc := WriteConfig(tb, dir, "PCAP_INTF lo;\n", access)
	pcap := filepath.Join(dir, "spa.pcap")
	WritePcap(tb, pcap, dgrams)
	argv := Argv(tb, dir, conf, acc, "-t", "-v", "--pcap-file", pcap, "-C", strconv.Itoa(len(dgrams)))
	var out syncbuf.Buffer
	cmd := ns.Command(argv...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("fwknopd: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		tb.Fatalf("fwknopd did not finish the pcap file in 60s:\n%s", out.String())
	}
	return out.String()
}

// Accepted reports whether fwknopd's output says it accepted a packet
// from src with stanza number stanza (in test mode).
func Accepted(out, src string, stanza int) bool {
	return strings.Contains(out, "["+src+"] (stanza #"+strconv.Itoa(stanza)+") --test mode enabled")
}

// Server is fwknopd sniffing an interface in a test namespace.
type Server struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

// Start runs fwknopd -f on iface inside ns with the access.conf text and
// waits until it is sniffing. It stops it when the test ends.
func Start(tb testing.TB, ns *netnstest.NS, iface, access string) *Server {
	tb.Helper()
	dir := tb.TempDir()
	conf, acc := WriteConfig(tb, dir, "PCAP_INTF "+iface+";\n", access)
	s := &Server{out: &syncbuf.Buffer{}, done: make(chan struct{})}
	s.cmd = ns.Command(Argv(tb, dir, conf, acc, "-i", iface, "-v")...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	tb.Cleanup(func() {
		// fwknopd removes its chains on SIGTERM; the namespace goes anyway.
		_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
	if !s.WaitFor("Starting fwknopd main event loop", 20*time.Second) {
		tb.Fatalf("fwknopd did not start:\n%s", s.Output())
	}
	return s
}

// Pid is fwknopd's process id (`ip netns exec` execs it in place).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is everything fwknopd printed so far.
func (s *Server) Output() string { return s.out.String() }

// WaitFor polls fwknopd's output for substr until timeout and reports
// whether it appeared.
func (s *Server) WaitFor(substr string, timeout time.Duration) bool {
	return s.WaitForCount(substr, 1, timeout)
}

// WaitForCount waits until substr appears at least n times.
func (s *Server) WaitForCount(substr string, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Count(s.out.String(), substr) >= n {
			return true
		}
		select {
		case <-s.done:
			return strings.Count(s.out.String(), substr) >= n
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DumpAccess runs `fwknopd -D` (dump the parsed configuration and exit)
// on the access.conf text inside a namespace of its own and returns, per
// stanza in order, the settings it printed ("KEY_LEN", "FW_ACCESS_TIMEOUT",
// ...; "SOURCE" holds the SOURCE text).
func DumpAccess(tb testing.TB, access string) []map[string]string {
	tb.Helper()
	ns := netnstest.NewNS(tb, "fwknopd")
	dir := tb.TempDir()
	conf, acc := WriteConfig(tb, dir, "PCAP_INTF lo;\n", access)
	out, err := ns.Run(Argv(tb, dir, conf, acc, "-D")...)
	if err != nil {
		tb.Fatalf("fwknopd -D: %v", err)
	}
	var stanzas []map[string]string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "SOURCE ("); ok {
			_, src, _ := strings.Cut(rest, "):")
			stanzas = append(stanzas, map[string]string{"SOURCE": strings.TrimSpace(src)})
			continue
		}
		if len(stanzas) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(line, ":  "); ok {
			stanzas[len(stanzas)-1][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return stanzas
}
