package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// An exec stamp says when a start command's first instruction ran: the
// shell rows' start command begins with `echo %IP% > FIFO` (a dash
// builtin: no fork, a few microseconds), and the driver, which holds the
// FIFO open for reading and writing (so no writer ever blocks and no
// read sees an end of file), timestamps each line as it arrives on a
// reader locked to its own thread. The same reader times the machine's
// own cost of spawning `/bin/sh -c 'echo ... > FIFO'` (spawnCost), so
// both are measured by one clock with the same read latency.

const fifoName = "exec.fifo"

// stamps reads one FIFO; its lines are what the start commands echoed.
type stamps struct {
	path string
	f    *os.File
	done chan struct{}

	mu    sync.Mutex // guards lines
	lines []line
}

func openStamps(dir string) (*stamps, error) {
	path := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(path, 0o666); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &stamps{path: path, f: f, done: make(chan struct{})}
	go s.read()
	return s, nil
}

func (s *stamps) read() {
	defer close(s.done)
	// The reader is what times the lines: keep it on its own thread so a
	// wake-up never waits for a Go P behind the driver's other work.
	runtime.LockOSThread()
	sc := bufio.NewScanner(s.f)
	for sc.Scan() {
		at := monoNow()
		s.mu.Lock()
		s.lines = append(s.lines, line{at: at, text: strings.TrimSpace(sc.Text())})
		s.mu.Unlock()
	}
}

func (s *stamps) snapshot() []line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]line(nil), s.lines...)
}

// wait returns the first line equal to text stamped at or after from,
// waiting up to timeout for it.
func (s *stamps) wait(text string, from int64, timeout time.Duration) (int64, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range s.snapshot() {
			if l.at >= from && l.text == text {
				return l.at, true
			}
		}
		if time.Now().After(deadline) {
			return 0, false
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (s *stamps) close() {
	if s == nil {
		return
	}
	s.f.Close()
	<-s.done
	os.Remove(s.path)
}

// stampCommand is the shell statement a start command begins with.
func stampCommand(fifo string) string { return "echo %IP% > " + fifo }

// spawnCost measures n spawns of `/bin/sh -c 'echo TOKEN > FIFO'` from
// this (Go) process: from just before exec.Cmd.Start to the line's
// arrival, in ms, spaced by gap. The child's exit is waited for after
// the stamp, outside the measurement.
func spawnCost(dir string, n int, gap time.Duration) ([]float64, error) {
	s, err := openStamps(dir)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var out []float64
	for i := 0; i < n; i++ {
		token := fmt.Sprintf("spawn-%d", i)
		c := exec.Command("/bin/sh", "-c", "echo "+token+" > "+s.path)
		t0 := monoNow()
		if err := c.Start(); err != nil {
			return out, fmt.Errorf("spawn /bin/sh: %w", err)
		}
		at, ok := s.wait(token, t0, 5*time.Second)
		_ = c.Wait()
		if !ok {
			return out, fmt.Errorf("spawn %d: /bin/sh wrote no stamp within 5 s", i)
		}
		out = append(out, float64(at-t0)/1e6)
		time.Sleep(gap)
	}
	return out, nil
}

// commandCost measures n runs of the shell rows' `iptables -I`, exec'd
// straight from this process (no shell) on a thread in the server
// namespace srv: from just before exec.Cmd.Start to the program's exit,
// in ms, spaced by gap plus up to jitter, as the latency rows space their
// samples (runs 5 ms apart took 7.5 ms where the rows' commands took
// ~10: caches and idle CPUs go cold between samples). It is what that
// start command costs on this machine whoever runs it. Each rule is deleted again outside the
// measurement; the sources come from 198.18.0.0/15 (benchmarking), which
// no knocker uses.
func commandCost(srv *netnstest.NS, n int, gap, jitter time.Duration) ([]float64, error) {
	var out []float64
	err := srv.Do(func() error {
		for i := 0; i < n; i++ {
			rule := []string{"INPUT", "-s", fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250), "-p", "tcp",
				"--dport", fmt.Sprint(protectedPort), "-j", "ACCEPT"}
			c := exec.Command("/usr/sbin/iptables", append([]string{"-I"}, rule...)...)
			t0 := monoNow()
			if err := c.Run(); err != nil {
				return fmt.Errorf("iptables -I %s: %w", strings.Join(rule, " "), err)
			}
			out = append(out, float64(monoNow()-t0)/1e6)
			if b, err := exec.Command("/usr/sbin/iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables -D %s: %w: %s", strings.Join(rule, " "), err, b)
			}
			time.Sleep(gap + rand.N(jitter))
		}
		return nil
	})
	return out, err
}

// spawnUnderProbe measures n spawns (spawnCost), then n runs of the
// shell rows' iptables command (commandCost), while a knocker probes a
// DROP-policy server with no daemon: its connection attempts, every
// --interval for as long as the spawns take, are the load a latency
// row's knockers put on the machine after their last knock.
func (r *runner) spawnUnderProbe(n int) (spawns, cmds []float64, err error) {
	r.n++
	dir := filepath.Join(r.work, fmt.Sprintf("%02d-spawn", r.n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	defer func() {
		if r.o.Work == "" {
			os.RemoveAll(dir)
		}
	}()
	srcs := knockerAddrs(4, 3, 1)
	p, err := r.lab.newPair(srcs)
	if err != nil {
		return nil, nil, err
	}
	var probe *proc
	defer func() {
		if err := r.lab.release(p, probe); err != nil {
			r.progress("cleanup: %v", err)
		}
	}()
	lock, _ := sesameShell.lockdown()
	for _, c := range lock {
		if _, err := p.srv.Run(c...); err != nil {
			return nil, nil, err
		}
	}
	probe, err = r.lab.start(p.cli, "probe", []string{r.self, "knockers", "-i", clientIf, "--dst-mac", p.srvMAC.String(),
		"--dst", serverAddr4.String(), "--port", fmt.Sprint(protectedPort), "--sequence", doorSequence,
		"--sources", srcs[0].String(), "--interval", r.o.Interval.String(), "--life", "50ms", "--timeout", "10m"}, false, "")
	if err != nil {
		return nil, nil, err
	}
	// Let the probe reach its steady state (attempts live 50 ms).
	if err := r.sleep(100 * time.Millisecond); err != nil {
		return nil, nil, err
	}
	spawns, err = spawnCost(dir, n, 5*time.Millisecond)
	if err == nil {
		cmds, err = commandCost(p.srv, n, 100*time.Millisecond, 100*time.Millisecond) // the latency rows' --gap, --gap-jitter
	}
	select {
	case <-probe.done:
		return spawns, cmds, fmt.Errorf("the probe ended during the spawns (%v): %s", probe.err, tail(probe.output(), 500))
	default:
	}
	return spawns, cmds, err
}
