package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPairConnects(t *testing.T) {
	p := NewPair(t)
	out := p.Server.MustRun("ip", "-br", "addr", "show", ServerIf)
	if !strings.Contains(out, ServerAddr4.String()) || !strings.Contains(out, ServerAddr6.String()) {
		t.Fatalf("server addresses missing: %s", out)
	}
	var ln net.Listener
	if err := p.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, host := range []string{ServerAddr4.String(), "[" + ServerAddr6.String() + "]"} {
		err := p.Client.Do(func() error {
			c, err := net.Dial("tcp", host+":"+strconv.Itoa(port))
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("dial %s from client namespace: %v", host, err)
		}
	}
}

func listed(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// New's namespace is the caller's: it stays until Close, Close deletes
// it even with a process inside, and a second Close is a no-op.
func TestNewClose(t *testing.T) {
	RequireRoot(t)
	n, err := New("close")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if !listed(t, n.Name) {
		t.Fatalf("%s not in ip netns list after New", n.Name)
	}
	if out, err := n.Run("ip", "-br", "link", "show", "lo"); err != nil || !strings.Contains(out, "UP") {
		t.Fatalf("loopback not up: %q %v", out, err)
	}
	sleeper := n.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	// Close kills what runs inside; `ip netns exec` enters the namespace
	// only after it started (a loaded machine showed the gap): wait
	// until the sleeper is inside.
	inside := func() bool {
		out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
		return slices.Contains(strings.Fields(string(out)), strconv.Itoa(sleeper.Process.Pid))
	}
	for deadline := time.Now().Add(10 * time.Second); !inside(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sleeper never entered the namespace")
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if listed(t, n.Name) {
		t.Fatalf("%s still listed after Close", n.Name)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the process inside outlived Close")
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// NewPairWith's options: a /16 link, extra client addresses that reach
// the server, and permanent neighbour entries for all of them.
func TestPairWithOptions(t *testing.T) {
	RequireRoot(t)
	extra := []netip.Addr{netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("fd77::1:1")}
	p, err := NewPairWith(PairOptions{Prefix4: 16, ClientAddrs: extra, StaticNeighbours: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if out := p.Server.MustRun("ip", "-br", "addr", "show", ServerIf); !strings.Contains(out, ServerAddr4.String()+"/16") {
		t.Errorf("server address not /16: %s", out)
	}
	cliMAC, err := p.Client.MAC(ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	srvMAC, err := p.Server.MAC(ServerIf)
	if err != nil {
		t.Fatal(err)
	}
	neigh := p.Server.MustRun("ip", "neigh", "show", "dev", ServerIf, "nud", "permanent")
	for _, a := range append([]netip.Addr{ClientAddr4, ClientAddr6}, extra...) {
		if !strings.Contains(neigh, a.String()+" lladdr "+cliMAC.String()) {
			t.Errorf("server has no permanent neighbour %s at %s: %s", a, cliMAC, neigh)
		}
	}
	neigh = p.Client.MustRun("ip", "neigh", "show", "dev", ClientIf, "nud", "permanent")
	for _, a := range []netip.Addr{ServerAddr4, ServerAddr6} {
		if !strings.Contains(neigh, a.String()+" lladdr "+srvMAC.String()) {
			t.Errorf("client has no permanent neighbour %s at %s: %s", a, srvMAC, neigh)
		}
	}
	var ln net.Listener
	if err := p.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, src := range extra {
		dst := ServerAddr4
		if src.Is6() {
			dst = ServerAddr6
		}
		if !p.Client.Connects(src, dst, port, 5*time.Second) {
			t.Errorf("no connection from %s to %s", src, dst)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if listed(t, p.Server.Name) || listed(t, p.Client.Name) {
		t.Error("namespaces listed after Pair.Close")
	}
}

// Sweep deletes a namespace named for a process that has exited and
// keeps this process's.
func TestSweep(t *testing.T) {
	RequireRoot(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-1-stale", namePrefix, dead.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { deleteNS(stale) })
	mine := NewNS(t, "mine")
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if listed(t, stale) {
		t.Errorf("%s (pid %d exited) still listed after Sweep", stale, dead.Process.Pid)
	}
	if !listed(t, mine.Name) {
		t.Errorf("Sweep deleted this process's %s", mine.Name)
	}
}
