// Package e2e runs the real binaries in network namespaces: sesamed in a
// server namespace, knock clients (Debian's knock and sesame knock) and a
// raw packet sender in a client namespace, and Debian's knockd as the
// reference. Everything runs as root in namespaces the tests create.
package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/syncbuf"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sesame-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, c := range []string{"sesamed", "sesame"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "../cmd/"+c)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", c, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// proc is a daemon (sesamed or knockd) running in a namespace.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	dir  string // the test's scratch directory: config, state, OUT file
	done chan struct{}
}

// expand replaces {{DIR}} in a config template with the scratch dir.
func expand(conf, dir string) string { return strings.ReplaceAll(conf, "{{DIR}}", dir) }

// startSesamed runs sesamed in ns with conf and waits until it captures.
func startSesamed(t testing.TB, ns *netnstest.NS, conf string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	return startSesamedIn(t, ns, dir, conf, args...)
}

func startSesamedIn(t testing.TB, ns *netnstest.NS, dir, conf string, args ...string) *proc {
	t.Helper()
	return startSesamedWrapped(t, ns, dir, conf, nil, args...)
}

// startSesamedWrapped runs sesamed under the command prefix wrap (which
// must exec its arguments, so the daemon keeps the process's pid).
func startSesamedWrapped(t testing.TB, ns *netnstest.NS, dir, conf string, wrap []string, args ...string) *proc {
	t.Helper()
	path := filepath.Join(dir, "sesame.conf")
	if err := os.WriteFile(path, []byte(expand(conf, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{bin("sesamed"), "-c", path, "--state-dir", filepath.Join(dir, "state"),
		"--socket", filepath.Join(dir, "control.sock"), "-v"}, args...)
	p := launch(t, "sesamed", ns, dir, append(append([]string(nil), wrap...), argv...))
	// Generous: on a loaded machine a start can take seconds.
	p.waitLog("starting up, listening on", 30*time.Second)
	return p
}

// startKnockd runs Debian's knockd in ns with conf (knockd -i sesame0).
func startKnockd(t testing.TB, ns *netnstest.NS, conf string) *proc {
	t.Helper()
	if _, err := exec.LookPath("knockd"); err != nil {
		t.Fatal("knockd not installed (apt-get install knockd)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	os.WriteFile(path, []byte(expand(conf, dir)), 0o600)
	p := launch(t, "knockd", ns, dir, []string{"knockd", "-c", path, "-i", netnstest.ServerIf, "-v"})
	p.waitLog("listening on", 10*time.Second)
	return p
}

func launch(t testing.TB, name string, ns *netnstest.NS, dir string, argv []string) *proc {
	p := &proc{t: t, name: name, out: &syncbuf.Buffer{}, dir: dir, done: make(chan struct{})}
	p.cmd = ns.Command(argv...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Dir = dir
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; SIGKILL after 10 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not stop on SIGTERM within 10 s", p.name)
	}
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// waitLog waits until the output contains s.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	if !poll(timeout, func() bool { return strings.Contains(p.out.String(), s) }) {
		p.t.Fatalf("%s: no %q within %v; output:\n%s", p.name, s, timeout, p.out.String())
	}
}

// Both daemons log knockd's "IP: door: OPEN SESAME".
var openRE = regexp.MustCompile(`(?:^|\s)([0-9a-fA-F.:]*[0-9a-fA-F]): (.+?): OPEN SESAME`)

// opens lists "src door" for every OPEN SESAME in the output, in order.
func (p *proc) opens() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	for sc.Scan() {
		if m := openRE.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

// file returns the lines of DIR/name (what start/stop commands wrote).
func (p *proc) file(name string) []string {
	b, _ := os.ReadFile(filepath.Join(p.dir, name))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// knocker sends knocks from the client namespace with one of the
// clients: Debian's knock or sesame knock.
type knocker struct {
	name string
	argv []string
}

var knockers = []knocker{
	{"knock", []string{"knock"}},
	{"sesame-knock", nil}, // bin() is only known after TestMain
}

func (k knocker) command() []string {
	if k.argv == nil {
		return []string{bin("sesame"), "knock"}
	}
	return k.argv
}

func (k knocker) knock(t testing.TB, ns *netnstest.NS, args ...string) {
	t.Helper()
	if _, err := ns.Run(append(k.command(), args...)...); err != nil {
		t.Fatalf("%s: %v", k.name, err)
	}
}

// raw sends crafted packets from the client namespace to the server.
type raw struct {
	t      testing.TB
	s      *rawsend.Sender
	dstMAC net.HardwareAddr
}

func newRaw(t testing.TB, p *netnstest.Pair) *raw {
	t.Helper()
	s, mac := rawsend.ForPair(t, p)
	return &raw{t: t, s: s, dstMAC: mac}
}

func (r *raw) send(spec rawsend.Spec) {
	r.t.Helper()
	spec.DstMAC = r.dstMAC
	if !spec.SrcIP.IsValid() {
		spec.SrcIP = netnstest.ClientAddr4
		if spec.DstIP.Is6() {
			spec.SrcIP = netnstest.ClientAddr6
		}
	}
	if !spec.DstIP.IsValid() {
		spec.DstIP = netnstest.ServerAddr4
	}
	if spec.SrcPort == 0 {
		spec.SrcPort = 40000
	}
	if err := r.s.Send(spec); err != nil {
		r.t.Fatal(err)
	}
}
