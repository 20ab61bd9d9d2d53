package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// The lab is the driver's bookkeeping of what it created: namespace
// pairs from internal/netnstest and the processes it started in them.
// close kills and deletes all of it, and is what every exit path (an
// error, Ctrl-C) goes through. A driver killed outright leaves
// netnstest's namespaces (sesame-tPID-*); the next run sweeps those whose
// PID is gone.

// Addresses inside the bench's namespaces are netnstest's. Spoofed
// sources are in prefixes routed nowhere: the server has no route back,
// and its firewall drops the knocks anyway.
var (
	serverAddr4 = netnstest.ServerAddr4
	clientAddr4 = netnstest.ClientAddr4
	serverAddr6 = netnstest.ServerAddr6
	clientAddr6 = netnstest.ClientAddr6
	spoof4      = netip.MustParsePrefix("10.128.0.0/10")
	spoof6      = netip.MustParsePrefix("fd78::/64")
)

const (
	serverIf = netnstest.ServerIf
	clientIf = netnstest.ClientIf
)

type lab struct {
	mu    sync.Mutex // guards all following fields
	pairs []*pair
	procs []*proc
}

// close stops every process and deletes every namespace; it returns the
// first error but always tries everything.
func (l *lab) close() error {
	l.mu.Lock()
	procs, pairs := l.procs, l.pairs
	l.procs, l.pairs = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	var first error
	for _, p := range pairs {
		if err := p.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sweep deletes namespaces left by bench drivers (and tests) that no
// longer run.
func sweep() { _ = netnstest.Sweep() }

// pair is a server and a client namespace joined by a veth, with the
// MAC address the client's raw senders put on their frames.
type pair struct {
	*netnstest.Pair
	srv, cli *netnstest.NS
	srvMAC   net.HardwareAddr
}

// newPair builds the two namespaces, the veth and the addresses (IPv4
// on a /16, so the knockers' 10.77.N.x are on the link), and the
// knockers' extra addresses on the client side, with permanent neighbour
// entries so no knocker's first connection waits for ARP or neighbour
// discovery.
func (l *lab) newPair(knockers []netip.Addr) (*pair, error) {
	np, err := netnstest.NewPairWith(netnstest.PairOptions{Prefix4: 16, ClientAddrs: knockers, StaticNeighbours: true})
	if err != nil {
		return nil, err
	}
	p := &pair{Pair: np, srv: np.Server, cli: np.Client}
	if p.srvMAC, err = p.srv.MAC(serverIf); err != nil {
		return nil, errors.Join(err, np.Close())
	}
	l.mu.Lock()
	l.pairs = append(l.pairs, p)
	l.mu.Unlock()
	return p, nil
}

// proc is a process the lab started in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed

	mu    sync.Mutex // guards lines and out
	lines []line     // output lines with their arrival times (watched procs)
	out   bytes.Buffer
}

// line is one line of a watched process's output and when the driver
// read it (CLOCK_MONOTONIC ns).
type line struct {
	at   int64
	text string
}

// start runs argv in n. A watched process's stdout and stderr are read
// line by line and timestamped as they arrive; otherwise they go to the
// file logPath (or are kept in memory when logPath is "").
func (l *lab) start(n *netnstest.NS, name string, argv []string, watch bool, logPath string) (*proc, error) {
	p := &proc{name: name, cmd: n.Command(argv...), done: make(chan struct{})}
	var pr *os.File
	switch {
	case watch:
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		pr = r
		p.cmd.Stdout, p.cmd.Stderr = w, w
		defer w.Close()
	case logPath != "":
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		p.cmd.Stdout, p.cmd.Stderr = f, f
	default:
		p.cmd.Stdout, p.cmd.Stderr = &lockedWriter{p: p}, &lockedWriter{p: p}
	}
	if err := p.cmd.Start(); err != nil {
		if pr != nil {
			pr.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	var reader sync.WaitGroup
	if pr != nil {
		reader.Add(1)
		go func() {
			defer reader.Done()
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				at := monoNow()
				p.mu.Lock()
				p.lines = append(p.lines, line{at: at, text: sc.Text()})
				p.out.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
			}
		}()
	}
	go func() {
		err := p.cmd.Wait()
		reader.Wait()
		p.err = err
		close(p.done)
	}()
	return p, nil
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// snapshot returns the timestamped lines read so far.
func (p *proc) snapshot() []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]line(nil), p.lines...)
}

// waitFor polls cond until it holds, the process exits, or timeout.
func (p *proc) waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before %s:\n%s", p.name, p.err, what, tail(p.output(), 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %v:\n%s", p.name, what, timeout, tail(p.output(), 2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig and waits up to 10 s for the process to exit, then
// kills it.
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) stop() { p.signal(syscall.SIGTERM) }

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// readFileString is os.ReadFile as a string, "" on error.
func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

var _ io.Writer = (*lockedWriter)(nil)

// release stops the processes started in p's namespaces and deletes them.
func (l *lab) release(p *pair, procs ...*proc) error {
	for _, pr := range procs {
		if pr != nil {
			pr.stop()
		}
	}
	l.mu.Lock()
	l.procs = slices.DeleteFunc(l.procs, func(x *proc) bool { return slices.Contains(procs, x) })
	l.pairs = slices.DeleteFunc(l.pairs, func(x *pair) bool { return x == p })
	l.mu.Unlock()
	return p.Close()
}

// counter reads one of an interface's statistics (0 when unreadable).
func counter(n *netnstest.NS, ifname, stat string) uint64 {
	out, err := n.Run("cat", "/sys/class/net/"+ifname+"/statistics/"+stat)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	return v
}

// drops counts frames lost on the veth between the namespaces: a veth
// that cannot queue a frame for its peer counts it as its own tx drop or
// the peer's rx drop, depending on the kernel, so both are summed.
func (p *pair) drops() uint64 {
	return counter(p.srv, serverIf, "rx_dropped") + counter(p.cli, clientIf, "tx_dropped")
}
