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
)

// The lab is the driver's bookkeeping of what it created: namespaces and
// the processes it started in them. close kills and deletes all of it,
// and is what every exit path (an error, Ctrl-C) goes through. A driver
// killed outright leaves namespaces named sesbench-PID-*; the next run
// sweeps those whose PID is gone.

const nsPrefix = "sesbench-"

// Addresses inside the bench's namespaces. Spoofed sources are in
// prefixes routed nowhere: the server has no route back, and its
// firewall drops the knocks anyway.
var (
	serverAddr4 = netip.MustParseAddr("10.77.0.1")
	clientAddr4 = netip.MustParseAddr("10.77.0.2")
	serverAddr6 = netip.MustParseAddr("fd77::1")
	clientAddr6 = netip.MustParseAddr("fd77::2")
	spoof4      = netip.MustParsePrefix("10.128.0.0/10")
	spoof6      = netip.MustParsePrefix("fd78::/64")
)

const (
	serverIf = "sesame0"
	clientIf = "sesame1"
)

type lab struct {
	mu    sync.Mutex // guards all following fields
	seq   int
	nss   []string
	procs []*proc
}

func (l *lab) name(role string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), l.seq, role)
}

// close stops every process and deletes every namespace; it returns the
// first error but always tries everything.
func (l *lab) close() error {
	l.mu.Lock()
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	var first error
	for _, n := range nss {
		if err := deleteNS(n); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sweep deletes namespaces left by bench drivers that no longer run.
func sweep() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[0], nsPrefix), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // another driver's, still running
		}
		_ = deleteNS(f[0])
	}
}

func deleteNS(name string) error {
	// Processes left inside keep the namespace alive.
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, s := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(s); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var last error
	for i := 0; i < 50; i++ {
		out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
		time.Sleep(20 * time.Millisecond)
	}
	return last
}

// ns is a network namespace the lab created.
type ns struct{ name string }

func (l *lab) newNS(role string) (*ns, error) {
	n := &ns{name: l.name(role)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.name, err, bytes.TrimSpace(out))
	}
	l.mu.Lock()
	l.nss = append(l.nss, n.name)
	l.mu.Unlock()
	return n, n.run("ip", "link", "set", "lo", "up")
}

func (n *ns) command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...)
}

func (n *ns) output(argv ...string) (string, error) {
	var buf bytes.Buffer
	c := n.command(argv...)
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Run(); err != nil {
		return buf.String(), fmt.Errorf("netns %s: %s: %w: %s", n.name, strings.Join(argv, " "), err, bytes.TrimSpace(buf.Bytes()))
	}
	return buf.String(), nil
}

func (n *ns) run(argv ...string) error {
	_, err := n.output(argv...)
	return err
}

// batch runs `ip -batch -` in the namespace with the given commands.
func (n *ns) batch(lines []string) error {
	c := exec.Command("ip", "-n", n.name, "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: ip -batch: %v: %s", n.name, err, bytes.TrimSpace(out))
	}
	return nil
}

// pair is a server and a client namespace joined by a veth.
type pair struct {
	srv, cli       *ns
	srvMAC, cliMAC net.HardwareAddr
}

// newPair builds the two namespaces, the veth and the addresses, and the
// knockers' extra addresses on the client side (with permanent neighbour
// entries on the server, so no knocker's first connection waits for ARP
// or neighbour discovery).
func (l *lab) newPair(knockers []netip.Addr) (*pair, error) {
	srv, err := l.newNS("srv")
	if err != nil {
		return nil, err
	}
	cli, err := l.newNS("cli")
	if err != nil {
		return nil, err
	}
	p := &pair{srv: srv, cli: cli}
	if err := srv.batch([]string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", serverIf, clientIf, cli.name),
		fmt.Sprintf("addr add %s/16 dev %s", serverAddr4, serverIf),
		fmt.Sprintf("addr add %s/64 dev %s nodad", serverAddr6, serverIf),
		"link set " + serverIf + " up",
	}); err != nil {
		return nil, err
	}
	lines := []string{
		fmt.Sprintf("addr add %s/16 dev %s", clientAddr4, clientIf),
		fmt.Sprintf("addr add %s/64 dev %s nodad", clientAddr6, clientIf),
		"link set " + clientIf + " up",
	}
	for _, a := range knockers {
		if a.Is4() {
			lines = append(lines, fmt.Sprintf("addr add %s/16 dev %s", a, clientIf))
		} else {
			lines = append(lines, fmt.Sprintf("addr add %s/64 dev %s nodad", a, clientIf))
		}
	}
	if err := cli.batch(lines); err != nil {
		return nil, err
	}
	if p.srvMAC, err = srv.mac(serverIf); err != nil {
		return nil, err
	}
	if p.cliMAC, err = cli.mac(clientIf); err != nil {
		return nil, err
	}
	var neigh []string
	for _, a := range append([]netip.Addr{clientAddr4, clientAddr6}, knockers...) {
		neigh = append(neigh, fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, p.cliMAC, serverIf))
	}
	for _, a := range []netip.Addr{serverAddr4, serverAddr6} {
		if err := cli.batch([]string{fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, p.srvMAC, clientIf)}); err != nil {
			return nil, err
		}
	}
	return p, srv.batch(neigh)
}

func (n *ns) mac(ifname string) (net.HardwareAddr, error) {
	out, err := n.output("cat", "/sys/class/net/"+ifname+"/address")
	if err != nil {
		return nil, err
	}
	return net.ParseMAC(strings.TrimSpace(out))
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
func (l *lab) start(n *ns, name string, argv []string, watch bool, logPath string) (*proc, error) {
	p := &proc{name: name, cmd: n.command(argv...), done: make(chan struct{})}
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
	l.nss = slices.DeleteFunc(l.nss, func(n string) bool { return n == p.srv.name || n == p.cli.name })
	l.mu.Unlock()
	return errors.Join(deleteNS(p.srv.name), deleteNS(p.cli.name))
}

// counter reads one of an interface's statistics (0 when unreadable).
func (n *ns) counter(ifname, stat string) uint64 {
	out, err := n.output("cat", "/sys/class/net/"+ifname+"/statistics/"+stat)
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
	return p.srv.counter(serverIf, "rx_dropped") + p.cli.counter(clientIf, "tx_dropped")
}
