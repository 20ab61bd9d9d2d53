// Package netnstest builds throw-away network namespaces for tests that
// capture packets or change a firewall: a server and a client namespace
// joined by a veth pair with IPv4 and IPv6 addresses. Everything it
// creates is deleted by t.Cleanup, even when the test fails, and it never
// touches the host namespace's addresses or firewall.
//
// Tests that use it call RequireRoot first; without root they skip with a
// message saying why, and with root (as in CI) they always run.
package netnstest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Fixed addresses are safe: every pair lives in its own namespaces, so
// parallel tests never see each other's veths.
var (
	ServerAddr4 = netip.MustParseAddr("10.77.0.1")
	ClientAddr4 = netip.MustParseAddr("10.77.0.2")
	ServerAddr6 = netip.MustParseAddr("fd77::1")
	ClientAddr6 = netip.MustParseAddr("fd77::2")
)

const (
	ServerIf = "sesame0"
	ClientIf = "sesame1"
)

// RequireRoot skips the test when it cannot create namespaces.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: needs root to create network namespaces (CI runs as root)")
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not installed (apt-get install iproute2): %v", tool, err)
		}
	}
}

// NS is a named network namespace created by this package.
type NS struct {
	Name string
	tb   testing.TB
}

// Pair is a server and a client namespace joined by a veth pair.
type Pair struct {
	Server, Client *NS
}

var seq atomic.Int64

func uniqueName(role string) string {
	return fmt.Sprintf("sesame-t%d-%d-%s", os.Getpid(), seq.Add(1), role)
}

// NewNS creates an empty namespace with loopback up.
func NewNS(tb testing.TB, role string) *NS {
	tb.Helper()
	RequireRoot(tb)
	n := &NS{Name: uniqueName(role), tb: tb}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	tb.Cleanup(func() { n.delete() })
	n.MustRun("ip", "link", "set", "lo", "up")
	return n
}

func (n *NS) delete() {
	// Kill what tests left running inside, or the namespace lingers
	// while its processes hold it.
	if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}
	var lastErr error
	for i := 0; i < 50; i++ {
		out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
		if err == nil {
			return
		}
		lastErr = fmt.Errorf("%v: %s", err, out)
		time.Sleep(20 * time.Millisecond)
	}
	n.tb.Errorf("ip netns del %s: %v", n.Name, lastErr)
}

// NewPair creates the server and client namespaces with a veth pair,
// ServerAddr4/6 on the server side and ClientAddr4/6 on the client side.
// IPv6 addresses skip duplicate address detection so they work at once.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	p := &Pair{Server: NewNS(tb, "srv"), Client: NewNS(tb, "cli")}
	p.Server.MustRun("ip", "link", "add", ServerIf, "type", "veth", "peer", "name", ClientIf, "netns", p.Client.Name)
	for _, side := range []struct {
		ns     *NS
		ifname string
		a4, a6 netip.Addr
	}{
		{p.Server, ServerIf, ServerAddr4, ServerAddr6},
		{p.Client, ClientIf, ClientAddr4, ClientAddr6},
	} {
		side.ns.MustRun("ip", "addr", "add", side.a4.String()+"/24", "dev", side.ifname)
		side.ns.MustRun("ip", "-6", "addr", "add", side.a6.String()+"/64", "dev", side.ifname, "nodad")
		side.ns.MustRun("ip", "link", "set", side.ifname, "up")
	}
	return p
}

// Command returns an exec.Cmd that runs argv inside the namespace.
func (n *NS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Run runs argv inside the namespace and returns its combined output.
func (n *NS) Run(argv ...string) (string, error) {
	var buf bytes.Buffer
	cmd := n.Command(argv...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("netns %s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, buf.String())
	}
	return buf.String(), err
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(argv ...string) string {
	n.tb.Helper()
	out, err := n.Run(argv...)
	if err != nil {
		n.tb.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// opens stay in the namespace after Do returns. The thread is restored
// to its original namespace; if that fails it is never reused.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns.Get: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime ends it with the goroutine.
			errc <- fmt.Errorf("restore netns: %w (fn: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Serve listens on TCP port (IPv4 and IPv6) inside the namespace and
// accepts and closes every connection, until the test ends: a stand-in
// for the service a door or the rescue protects.
func (n *NS) Serve(tb testing.TB, port uint16) {
	tb.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// Connects reports whether a TCP connection from inside the namespace
// (from src when it is valid) to dst:port completes within timeout.
func (n *NS) Connects(src, dst netip.Addr, port uint16, timeout time.Duration) bool {
	ok := false
	n.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok
}

// RequireExecInNS proves that a program started from n.Do runs inside
// the namespace, before a test lets a library exec iptables, ipset or nft
// from there: if it did not, the test would change the host's firewall.
func RequireExecInNS(tb testing.TB, n *NS) {
	tb.Helper()
	want := strings.TrimSpace(n.MustRun("readlink", "/proc/self/ns/net"))
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		tb.Fatal(err)
	}
	var got string
	if err := n.Do(func() error {
		out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
		got = strings.TrimSpace(string(out))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	if got != want || got == host {
		tb.Fatalf("exec from ns.Do ran in %s, want %s (host %s): refusing to touch a firewall", got, want, host)
	}
}
