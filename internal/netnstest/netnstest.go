// Package netnstest builds throw-away network namespaces for tests that
// capture packets or change a firewall, and for the benchmark driver's
// lab: a server and a client namespace joined by a veth pair with IPv4
// and IPv6 addresses. It never touches the host namespace's addresses or
// firewall.
//
// New and NewPairWith return namespaces that their Close deletes, for
// programs; NewNS and NewPair are the same for tests, deleted by
// t.Cleanup even when the test fails. Tests call RequireRoot first;
// without root they skip with a message saying why, and with root (as in
// CI) they always run. Sweep deletes what a process killed outright left.
package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
	tb   testing.TB // set by NewNS and NewPair, for MustRun

	mu     sync.Mutex // guards closed
	closed bool
}

// Pair is a server and a client namespace joined by a veth pair.
type Pair struct {
	Server, Client *NS
}

var seq atomic.Int64

// namePrefix starts every namespace's name; the process's pid follows,
// which is how Sweep tells a live owner from a dead one.
const namePrefix = "sesame-t"

func uniqueName(role string) string {
	return fmt.Sprintf("%s%d-%d-%s", namePrefix, os.Getpid(), seq.Add(1), role)
}

// New creates an empty namespace for role (a word in its name) with
// loopback up. The caller owns it and deletes it with Close. It returns
// an error, having removed what it created, when ip fails (not root, no
// iproute2).
func New(role string) (*NS, error) {
	n := &NS{Name: uniqueName(role)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	if _, err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// NewNS is New for a test: it skips without root, fails the test on
// error, and deletes the namespace when the test ends.
func NewNS(tb testing.TB, role string) *NS {
	tb.Helper()
	RequireRoot(tb)
	n, err := New(role)
	if err != nil {
		tb.Fatal(err)
	}
	n.tb = tb
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Error(err)
		}
	})
	return n
}

// Close kills the processes still inside the namespace (they would keep
// it alive) and deletes it. It is safe to call more than once; only the
// first call does anything.
func (n *NS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	return deleteNS(n.Name)
}

func deleteNS(name string) error {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}
	var lastErr error
	for i := 0; i < 50; i++ {
		out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("ip netns del %s: %w", name, lastErr)
}

// Sweep deletes the namespaces this package named for processes that no
// longer run: what a test binary or the bench driver killed outright
// left. Namespaces of live processes, this one included, stay. It
// returns the first error but tries every namespace.
func Sweep() error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var first error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], namePrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[0], namePrefix), "-", 2)[0])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its owner still runs
		}
		if err := deleteNS(f[0]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// PairOptions shape what NewPairWith builds beyond NewPair's link.
type PairOptions struct {
	// Prefix4 is the IPv4 prefix length of the link's addresses; 0 means
	// 24. (IPv6 addresses are always /64.)
	Prefix4 int
	// ClientAddrs are more addresses on the client's side of the link,
	// each in the link's prefix (Prefix4 or /64) so the server reaches
	// them without a route.
	ClientAddrs []netip.Addr
	// StaticNeighbours adds permanent neighbour entries on both sides
	// (the server's addresses on the client, the client's and
	// ClientAddrs on the server), so no first packet waits for ARP or
	// neighbour discovery.
	StaticNeighbours bool
}

// NewPair creates the server and client namespaces with a veth pair,
// ServerAddr4/6 on the server side and ClientAddr4/6 on the client side.
// IPv6 addresses skip duplicate address detection so they work at once.
// It skips without root, fails the test on error, and deletes both
// namespaces when the test ends.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	RequireRoot(tb)
	p, err := NewPairWith(PairOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	p.Server.tb, p.Client.tb = tb, tb
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// NewPairWith is NewPair for programs, shaped by o: the caller owns the
// pair and deletes it with Close. On error, what it created is removed.
func NewPairWith(o PairOptions) (p *Pair, err error) {
	bits4 := o.Prefix4
	if bits4 == 0 {
		bits4 = 24
	}
	p = &Pair{}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
			p = nil
		}
	}()
	if p.Server, err = New("srv"); err != nil {
		return p, err
	}
	if p.Client, err = New("cli"); err != nil {
		return p, err
	}
	addr := func(a netip.Addr, ifname string) string {
		if a.Is4() {
			return fmt.Sprintf("addr add %s/%d dev %s", a, bits4, ifname)
		}
		return fmt.Sprintf("addr add %s/64 dev %s nodad", a, ifname)
	}
	if err := p.Server.Batch([]string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", ServerIf, ClientIf, p.Client.Name),
		addr(ServerAddr4, ServerIf), addr(ServerAddr6, ServerIf),
		"link set " + ServerIf + " up",
	}); err != nil {
		return p, err
	}
	cli := []string{addr(ClientAddr4, ClientIf), addr(ClientAddr6, ClientIf)}
	for _, a := range o.ClientAddrs {
		cli = append(cli, addr(a, ClientIf))
	}
	if err := p.Client.Batch(append(cli, "link set "+ClientIf+" up")); err != nil {
		return p, err
	}
	if !o.StaticNeighbours {
		return p, nil
	}
	srvMAC, err := p.Server.MAC(ServerIf)
	if err != nil {
		return p, err
	}
	cliMAC, err := p.Client.MAC(ClientIf)
	if err != nil {
		return p, err
	}
	neigh := func(a netip.Addr, mac net.HardwareAddr, ifname string) string {
		return fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, mac, ifname)
	}
	var srv []string
	for _, a := range append([]netip.Addr{ClientAddr4, ClientAddr6}, o.ClientAddrs...) {
		srv = append(srv, neigh(a, cliMAC, ServerIf))
	}
	if err := p.Server.Batch(srv); err != nil {
		return p, err
	}
	return p, p.Client.Batch([]string{neigh(ServerAddr4, srvMAC, ClientIf), neigh(ServerAddr6, srvMAC, ClientIf)})
}

// Close deletes both namespaces (the veth goes with them); it is safe to
// call more than once and on a half-built pair.
func (p *Pair) Close() error {
	var errs []error
	for _, n := range []*NS{p.Client, p.Server} {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
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

// MustRun is Run that fails the test on error. On a namespace from New
// or NewPairWith, which belongs to no test, it panics on error.
func (n *NS) MustRun(argv ...string) string {
	if n.tb == nil {
		out, err := n.Run(argv...)
		if err != nil {
			panic(err)
		}
		return out
	}
	n.tb.Helper()
	out, err := n.Run(argv...)
	if err != nil {
		n.tb.Fatal(err)
	}
	return out
}

// Batch runs `ip -batch -` in the namespace with lines as its commands
// (one process for many addresses or routes).
func (n *NS) Batch(lines []string) error {
	c := exec.Command("ip", "-n", n.Name, "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: ip -batch: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// MAC returns the hardware address of the namespace's interface ifname.
func (n *NS) MAC(ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %s: %w", n.Name, ifname, err)
	}
	return mac, nil
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
