package e2e

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/rawsend"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// Inputs sesamed must refuse with a clear error, or handle safely
// (issue 11, "Inputs that must be refused").

// launchExpectingExit runs sesamed with conf in dir and waits for it to
// end; it returns the exit code and the output. A daemon that starts
// instead is stopped after a while (exit code -1).
func launchExpectingExit(t *testing.T, ns *netnstest.NS, dir, conf string, args ...string) (int, string) {
	t.Helper()
	path := filepath.Join(dir, "sesame.conf")
	if err := os.WriteFile(path, []byte(expand(conf, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{bin("sesamed"), "-c", path, "--state-dir", filepath.Join(dir, "state"),
		"--socket", filepath.Join(dir, "control.sock")}, args...)
	p := launch(t, "sesamed", ns, dir, argv)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), p.out.String()
	case <-time.After(10 * time.Second):
		p.stop()
		return -1, p.out.String()
	}
}

// A first start with an invalid config exits 1 with file and line; with
// a last good config it runs that one and names it.
func TestFirstStartWithAnInvalidConfig(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	dir := t.TempDir()
	code, out := launchExpectingExit(t, p.Server, dir, "[options]\n\tInterface = sesame0\n[base]\n\tsequence = 7000,abc\n")
	lastGood := filepath.Join(dir, "state", "last-good.conf")
	if code != 1 {
		t.Fatalf("exit code %d, want 1; output:\n%s", code, out)
	}
	for _, want := range []string{filepath.Join(dir, "sesame.conf") + ":4:", "no last good config", lastGood} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "starting up") {
		t.Errorf("reported itself started:\n%s", out)
	}

	// A good start leaves a last good config; a bad edit then falls back
	// to it, loudly.
	d := startSesamedIn(t, p.Server, dir, baseConf)
	d.stop()
	d = startSesamedIn(t, p.Server, dir, "[base]\nsequence = 0\n")
	d.waitLog("config invalid, running the last good config from "+lastGood, time.Second)
	e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p), d: d}
	e.knock("7000", "8000", "9000")
	if got := e.barrier(); !slices.Equal(got, []string{client + " base"}) {
		t.Errorf("running the last good config opened %q", got)
	}
	out, err := p.Server.Run(bin("sesame"), "grants", "--socket", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Errorf("sesame grants against the fallback daemon: %v\n%s", err, out)
	}
}

// A state directory, or anything in it, that someone other than root
// could have written is refused before anything in it is read or run;
// so is a control socket directory others can write to.
func TestStartRefusesAnUntrustedStateOrSocketDir(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	// What a previous run leaves: a journal, the stop markers' directory,
	// the last good config.
	good := t.TempDir()
	startSesamedIn(t, p.Server, good, baseConf).stop()
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string) string // returns the path the error must name
		args   func(dir string) []string
	}{
		{"state dir writable by all", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state")
			os.Chmod(p, 0o777)
			return p + " is writable by its group or others"
		}, nil},
		{"last good config writable by group", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state", "last-good.conf")
			os.Chmod(p, 0o660)
			return p + " is writable by its group or others"
		}, nil},
		{"journal owned by nobody", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state", journal.LogName)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("no journal at %s: %v", p, err)
			}
			os.Chown(p, 65534, 65534)
			return p + " is owned by uid 65534"
		}, nil},
		{"planted marker owned by nobody", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state", "stops", "0123456789abcdef.stopped.pid")
			os.WriteFile(p, []byte("1\n"), 0o600)
			os.Chown(p, 65534, 65534)
			return p + " is owned by uid 65534"
		}, nil},
		{"symlink in the state dir", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "state", "stops", "x.stopped")
			os.Symlink("/etc/passwd", p)
			return p + " is a symbolic link"
		}, nil},
		{"control socket dir writable by all", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "run")
			os.Mkdir(p, 0o777)
			os.Chmod(p, 0o777)
			return p + " is writable by its group or others"
		}, func(dir string) []string { return []string{"--socket", filepath.Join(dir, "run", "control.sock")} }},
		{"a file at the socket path", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "control.sock")
			os.WriteFile(p, []byte("not a socket"), 0o600)
			return p + ": exists and is not a socket"
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := p.Server.Run("cp", "-a", filepath.Join(good, "state"), dir); err != nil {
				t.Fatalf("copy state: %v: %s", err, out)
			}
			want := tc.tamper(t, dir)
			var args []string
			if tc.args != nil {
				args = tc.args(dir)
			}
			code, out := launchExpectingExit(t, p.Server, dir, baseConf, args...)
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("exit code %d, want 1 with %q; output:\n%s", code, want, out)
			}
		})
	}
}

// Knocks from sources no remote knocker can have never count: loopback,
// unspecified, multicast, broadcast, link-local, and the host's own
// addresses (on any interface) and subnet broadcasts.
func TestImpossibleSourcesNeverOpen(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	// An address of the host on an interface sesamed does not capture on.
	p.Server.MustRun("ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	p.Server.MustRun("ip", "addr", "add", "10.99.0.1/24", "dev", "other0")
	p.Server.MustRun("ip", "link", "set", "other0", "up")
	e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
	e.d = startSesamed(t, p.Server, baseConf)
	sources := []string{
		"127.0.0.1", "0.0.0.0", "224.0.0.251", "255.255.255.255", "169.254.3.3",
		"10.77.0.1", "10.77.0.255", "10.99.0.1", "10.99.0.255",
		"::1", "fe80::99", "ff02::1", "fd77::1", "::ffff:127.0.0.1", "::ffff:10.77.0.1",
	}
	for _, s := range sources {
		src := netip.MustParseAddr(s)
		dst := netnstest.ServerAddr4
		if src.Is6() {
			dst = netnstest.ServerAddr6
		}
		for _, port := range []uint16{7000, 8000, 9000} {
			e.raw.send(rawsend.Spec{SrcIP: src, DstIP: dst, DstPort: port, Proto: knock.TCP, Flags: knock.SYN})
		}
	}
	if got := e.barrier(); len(got) != 0 {
		t.Errorf("knocks from impossible sources opened %q", got)
	}
	// A spoofed but possible source still counts, as knockd's would.
	for _, port := range []uint16{7000, 8000, 9000} {
		e.raw.send(rawsend.Spec{SrcIP: netip.MustParseAddr("192.0.2.77"), DstPort: port, Proto: knock.TCP, Flags: knock.SYN})
	}
	if got := e.barrier(); !slices.Equal(got, []string{"192.0.2.77 base"}) {
		t.Errorf("opened %q, want the possible source's door", got)
	}
}

// An IPv4-mapped source arrives in an IPv6 packet: it is IPv6 traffic
// (it opens as itself), and -4 ignores it.
func TestIPv4MappedSourceIsIPv6Traffic(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	mapped := netip.MustParseAddr("::ffff:" + client)
	for _, only4 := range []bool{false, true} {
		t.Run(fmt.Sprint("-4=", only4), func(t *testing.T) {
			p := netnstest.NewPair(t)
			e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
			var args []string
			if only4 {
				args = []string{"-4"}
			}
			e.d = startSesamed(t, p.Server, baseConf, args...)
			for _, port := range []uint16{7000, 8000, 9000} {
				e.raw.send(rawsend.Spec{SrcIP: mapped, DstIP: netnstest.ServerAddr6, DstPort: port, Proto: knock.TCP, Flags: knock.SYN})
			}
			got := e.barrier()
			want := []string{mapped.String() + " base"}
			if only4 {
				want = nil
			}
			if !slices.Equal(got, want) {
				t.Errorf("opened %q, want %q", got, want)
			}
		})
	}
}

// bigDoorsConf is 150 doors of 30 random ports each: a kernel filter
// that checks them exactly needs more than 4096 instructions.
func bigDoorsConf(rng *rand.Rand) (string, [][]uint16) {
	var b strings.Builder
	used := map[uint16]bool{7000: true, 8000: true, 9000: true, 65000: true}
	var doors [][]uint16
	for d := 0; d < 150; d++ {
		var seq []uint16
		for len(seq) < 30 {
			p := uint16(1024 + rng.Intn(60000))
			if !used[p] {
				used[p] = true
				seq = append(seq, p)
			}
		}
		doors = append(doors, seq)
		parts := make([]string, len(seq))
		for i, p := range seq {
			parts[i] = strconv.Itoa(int(p))
		}
		fmt.Fprintf(&b, "[big%d]\n\tsequence = %s\n\tseq_timeout = 60\n", d, strings.Join(parts, ","))
	}
	return b.String(), doors
}

// A config whose exact classic filter exceeds the kernel's 4096
// instructions still captures: with the eBPF filter, exactly; without
// CAP_BPF and CAP_SYS_ADMIN (the kernel refuses eBPF), with a coarser
// classic filter and user space checking the rest. It used to capture
// nothing while reporting itself healthy.
func TestLargeConfigStillCaptures(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	seed := rand.Int63()
	if s := os.Getenv("SESAME_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (SESAME_TEST_SEED=%d replays it)", seed, seed)
	for _, tc := range []struct {
		name string
		wrap []string
		logs []string
	}{
		{"ebpf", nil, []string{"capture filter on sesame0: eBPF, exact"}},
		{"classic without CAP_BPF", []string{"setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon", "--"},
			[]string{"capture filter on sesame0: classic BPF", "eBPF not available: capture: eBPF not permitted",
				"capture filter on sesame0 is coarser than the doors ask"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big, doors := bigDoorsConf(rand.New(rand.NewSource(seed)))
			p := netnstest.NewPair(t)
			e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
			e.d = startSesamedWrapped(t, p.Server, t.TempDir(), baseConf+big, tc.wrap)
			e.knock("7000", "8000", "9000")
			var ports []string
			for _, port := range doors[42] {
				ports = append(ports, strconv.Itoa(int(port)))
			}
			e.knock(ports...)
			if got := e.barrier(); !slices.Equal(got, []string{client + " base", client + " big42"}) {
				t.Errorf("opened %q", got)
			}
			for _, l := range tc.logs {
				e.d.waitLog(l, time.Second)
			}
		})
	}
}

// notifySocket listens where sesamed's sd_notify messages go.
func notifySocket(t *testing.T) (string, *syncbuf.Buffer) {
	t.Helper()
	conn, path := notifytest.Listen(t)
	var msgs syncbuf.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			fmt.Fprintf(&msgs, "%s\n--\n", buf[:n])
		}
	}()
	return path, &msgs
}

// A capture whose filter the kernel refuses (here: no option memory for
// any program) makes sesamed unhealthy: no WATCHDOG=1, and STATUS= says
// why. Once a filter attaches, the pings come back.
func TestCaptureWithoutAFilterIsUnhealthy(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	orig, err := p.Server.Run("cat", "/proc/sys/net/core/optmem_max")
	if err != nil {
		t.Skipf("net.core.optmem_max is not per network namespace on this kernel (before 6.9): %v", err)
	}
	p.Server.MustRun("sh", "-c", "echo 64 > /proc/sys/net/core/optmem_max")
	sock, msgs := notifySocket(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.conf")
	os.WriteFile(path, []byte(expand(baseConf, dir)), 0o600)
	argv := []string{"env", "NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000", bin("sesamed"), "-c", path,
		"--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "control.sock"), "-v"}
	d := launch(t, "sesamed", p.Server, dir, argv)
	d.waitLog("starting up, listening on", 10*time.Second)
	if !poll(10*time.Second, func() bool { return strings.Contains(msgs.String(), "sesame0 (no filter: ") }) {
		t.Fatalf("STATUS never said the filter is missing; messages:\n%s", msgs.String())
	}
	// Pings are due every 0.5 s: none for 3 s.
	before := strings.Count(msgs.String(), "WATCHDOG=1")
	time.Sleep(3 * time.Second)
	if n := strings.Count(msgs.String(), "WATCHDOG=1") - before; n != 0 || before != 0 {
		t.Errorf("%d watchdog pings (and %d before) while the capture had no filter", n, before)
	}
	d.waitLog("withholding watchdog ping: unhealthy: capture sesame0: capture: cannot attach a filter", time.Second)

	p.Server.MustRun("sh", "-c", "echo "+strings.TrimSpace(orig)+" > /proc/sys/net/core/optmem_max")
	if !poll(15*time.Second, func() bool { return strings.Count(msgs.String(), "WATCHDOG=1") > 0 }) {
		t.Fatalf("no watchdog ping after the filter could attach; output:\n%s", d.out.String())
	}
}

// 33,000 doors, each with its own seq_timeout: more timeout classes than
// an int16 indexed, which panicked the engine at the first knock on a
// door past 32,767 (a remote crash from a config sesame check accepted).
// What sesame check accepts, the daemon runs.
func TestCheckAgreesWithTheDaemonOnManyTimeouts(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	var b strings.Builder
	const n = 33000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[d%d]\n\tsequence = %d,64999:udp\n\tseq_timeout = %d.%03d\n", i, 1024+i, 5+i/1000, i%1000)
	}
	p := netnstest.NewPair(t)
	dir := t.TempDir()
	conf := baseConf + b.String()
	path := filepath.Join(dir, "check.conf")
	os.WriteFile(path, []byte(expand(conf, dir)), 0o600)
	if out, err := p.Server.Run(bin("sesame"), "check", path); err != nil || !strings.Contains(out, fmt.Sprintf("OK, %d door(s)", n+2)) {
		t.Fatalf("sesame check: %v\n%.500s", err, out)
	}
	e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
	e.d = startSesamedIn(t, p.Server, dir, conf)
	last := n - 1
	e.knock(strconv.Itoa(1024+last), "64999:udp")
	e.knock("7000", "8000", "9000")
	if got := e.barrier(); !slices.Equal(got, []string{fmt.Sprintf("%s d%d", client, last), client + " base"}) {
		t.Errorf("opened %q", got)
	}
}
