package rescue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/syncbuf"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Privileged tests: a server namespace locked down by an admin firewall
// (INPUT policy drop), TCP listeners on two rescue ports (2222, which the
// grants backend also guards, and 2223, which it does not), Sesame's
// grants backend set up for 2222 as the daemon would, and a client
// namespace with two addresses per family: .2 is in Rescue_From, .3 is
// not.

const (
	guardedRescue = 2222 // a rescue port core/firewall also guards
	plainRescue   = 2223 // a rescue port nothing else guards
	testAfter     = 2 * time.Second
	probeTimeout  = 200 * time.Millisecond
)

var (
	otherClient4 = netip.MustParseAddr("10.77.0.3")
	otherClient6 = netip.MustParseAddr("fd77::3")
	rescuePorts  = []uint16{guardedRescue, plainRescue}
)

type variant struct {
	name string
	kind firewall.Kind
	bins [2]string // the admin's iptables binaries; empty for nftables
}

var variants = []variant{
	{"nftables", firewall.NFTables, [2]string{}},
	{"iptables-nft", firewall.IPTablesNFT, [2]string{"iptables-nft", "ip6tables-nft"}},
	{"iptables-legacy", firewall.IPTablesLegacy, [2]string{"iptables-legacy", "ip6tables-legacy"}},
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install iptables ipset nftables): %v", tool, err)
		}
	}
}

type env struct {
	t    *testing.T
	v    variant
	pair *netnstest.Pair
	fw   firewall.Backend // the grants backend, as the daemon sets it up
}

// newEnv builds the namespaces. adminAccepts are the ports the admin's
// nftables ruleset accepts (iptables admins accept none: the policy
// drops, Sesame's chains accept).
func newEnv(t *testing.T, v variant, adminAccepts ...uint16) *env {
	t.Helper()
	e := newBareEnv(t, v, adminAccepts...)
	e.setupGrants(hclog.NewNullLogger())
	return e
}

// newBareEnv is newEnv without the grants backend.
func newBareEnv(t *testing.T, v variant, adminAccepts ...uint16) *env {
	t.Helper()
	netnstest.RequireRoot(t)
	requireTools(t, "ipset", "nft", "iptables-nft", "iptables-legacy")
	p := netnstest.NewPair(t)
	netnstest.RequireExecInNS(t, p.Server)
	p.Client.MustRun("ip", "addr", "add", otherClient4.String()+"/24", "dev", netnstest.ClientIf)
	p.Client.MustRun("ip", "-6", "addr", "add", otherClient6.String()+"/64", "dev", netnstest.ClientIf, "nodad")
	e := &env{t: t, v: v, pair: p}
	e.lockDown(adminAccepts)
	for _, port := range rescuePorts {
		e.listen(port)
	}
	return e
}

// setupGrants sets up core/firewall's backend of the variant's kind,
// guarding guardedRescue, as sesamed does at start.
func (e *env) setupGrants(log hclog.Logger) {
	e.t.Helper()
	err := e.pair.Server.Do(func() error {
		fw, err := firewall.New(e.v.kind, log)
		if err != nil {
			return err
		}
		e.fw = fw
		return fw.Setup(context.Background(), []knock.Port{{Num: guardedRescue, Proto: knock.TCP}})
	})
	if err != nil {
		e.t.Fatalf("grants backend: %v", err)
	}
}

// lockDown installs the admin's firewall: policy drop, loopback,
// established connections and ICMPv6 (neighbour discovery) accepted. On
// nftables the admin also accepts the rescue ports, as the package doc
// asks: Sesame decides who gets through them.
func (e *env) lockDown(accepts []uint16) {
	s := e.pair.Server
	if e.v.kind == firewall.NFTables {
		var ports []string
		for _, p := range accepts {
			ports = append(ports, fmt.Sprint(p))
		}
		ruleset := fmt.Sprintf(`table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif lo accept
		ct state established,related accept
		meta l4proto ipv6-icmp accept
		tcp dport { %s } accept
	}
}
`, strings.Join(ports, ", "))
		path := e.t.TempDir() + "/admin.nft"
		if err := os.WriteFile(path, []byte(ruleset), 0o600); err != nil {
			e.t.Fatal(err)
		}
		s.MustRun("nft", "-f", path)
		return
	}
	for _, bin := range e.v.bins {
		s.MustRun(bin, "-P", "INPUT", "DROP")
		s.MustRun(bin, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
		s.MustRun(bin, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
	}
	s.MustRun(e.v.bins[1], "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT")
}

// listen accepts and closes connections on port, both families, in the
// server namespace, until the test ends.
func (e *env) listen(port uint16) { e.pair.Server.Serve(e.t, port) }

// reach reports whether a TCP connection from src (a client address) to
// the server's port completes. A dropped SYN shows as a timeout, and so
// can a SYN-ACK that a loaded machine delivers late: that a port is
// reachable is a fact, that it is not only a likelihood (see reaches).
func (e *env) reach(src netip.Addr, port uint16) bool {
	dst := netnstest.ServerAddr4
	if src.Is6() {
		dst = netnstest.ServerAddr6
	}
	ok := false
	err := e.pair.Client.Do(func() error {
		d := net.Dialer{Timeout: probeTimeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err == nil {
			ok = true
			c.Close()
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	if err != nil {
		e.t.Errorf("dial %s -> :%d: %v", src, port, err)
	}
	return ok
}

// sources are the client addresses of both families; allowed says
// whether Rescue_From lets them in.
var sources = []struct {
	addr    netip.Addr
	allowed bool
}{
	{netnstest.ClientAddr4, true},
	{netnstest.ClientAddr6, true},
	{otherClient4, false},
	{otherClient6, false},
}

// state probes every rescue port from every source and describes what
// is reachable, e.g. "10.77.0.2:2222 10.77.0.2:2223"; "" means nothing.
func (e *env) state() string {
	type probe struct {
		addr netip.Addr
		port uint16
	}
	var probes []probe
	for _, s := range sources {
		for _, port := range rescuePorts {
			probes = append(probes, probe{s.addr, port})
		}
	}
	// In parallel: a closed port costs a whole probeTimeout.
	ok := make([]bool, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() { ok[i] = e.reach(p.addr, p.port) })
	}
	wg.Wait()
	var open []string
	for i, p := range probes {
		if ok[i] {
			open = append(open, fmt.Sprintf("%s:%d", p.addr, p.port))
		}
	}
	return strings.Join(open, " ")
}

// rescueOpen is state() when the rescue is open to Rescue_From.
func rescueOpen() string {
	var open []string
	for _, s := range sources {
		for _, port := range rescuePorts {
			if s.allowed {
				open = append(open, fmt.Sprintf("%s:%d", s.addr, port))
			}
		}
	}
	return strings.Join(open, " ")
}

// reaches probes until state() is want or shows a port want does not
// have, for up to within, and returns the last state. A port the probes
// reach is reachable; one they do not may only have been slow to answer
// on a loaded machine, so a state that wants ports reachable is asked
// again rather than judged on one probe.
func (e *env) reaches(want string, within time.Duration) string {
	start := time.Now()
	for {
		got := e.state()
		if got == want || time.Since(start) > within || !subset(got, want) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// subset reports whether every port reachable in got is reachable in
// want.
func subset(got, want string) bool {
	w := strings.Fields(want)
	for _, x := range strings.Fields(got) {
		if !slices.Contains(w, x) {
			return false
		}
	}
	return true
}

// waitState polls until state() is want, and returns how long it took
// from start; it fails the test at the deadline.
func (e *env) waitState(want string, start time.Time, within time.Duration) time.Duration {
	e.t.Helper()
	var got string
	for {
		got = e.state()
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			e.t.Fatalf("after %s: reachable %q, want %q", time.Since(start).Round(time.Millisecond), got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdState checks that state() stays want for d.
func (e *env) holdState(want string, d time.Duration) {
	e.t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if got := e.state(); got != want {
			e.t.Fatalf("after %s: reachable %q, want %q throughout %s", time.Since(start).Round(time.Millisecond), got, want, d)
		}
	}
}

// daemon is a stand-in sesamed (the test binary in helper mode) running
// in the server namespace.
type daemon struct {
	t      *testing.T
	after  time.Duration // Rescue_After
	linger time.Duration // lingerOf its firewall family
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer // its log, and its heartbeats (beats)
	ready  time.Time
}

func (e *env) startDaemon(hc helperConfig) *daemon {
	e.t.Helper()
	raw, err := json.Marshal(hc)
	if err != nil {
		e.t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	d := &daemon{t: e.t, after: hc.After, linger: lingerOf(e.v.kind), cmd: e.pair.Server.Command(exe, "-test.run=^$"), stderr: &syncbuf.Buffer{}}
	d.cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGCONT)
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("stand-in daemon's log:\n%s", d.stderr.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "ready" {
			e.t.Fatalf("stand-in daemon did not start: %q; log:\n%s", l, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		e.t.Fatalf("stand-in daemon not ready after 30s; log:\n%s", d.stderr.String())
	}
	d.ready = time.Now()
	return d
}

func (d *daemon) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return time.Now()
}

// do runs fn in the server namespace, failing the test on error.
func (e *env) do(fn func() error) {
	e.t.Helper()
	if err := e.pair.Server.Do(fn); err != nil {
		e.t.Fatal(err)
	}
}

// newSwitch builds the Switch for spec in kind's family, as the daemon
// does, in the server namespace.
func (e *env) newSwitch(kind firewall.Kind, spec firewall.RescueSpec) *Switch {
	e.t.Helper()
	var fw *firewall.Rescue
	e.do(func() (err error) {
		fw, err = firewall.NewRescue(kind, spec, nil)
		return err
	})
	return New(fw, nil)
}

// kernelObjects lists the rescue objects the kernel holds in the server
// namespace, whichever family: "" when there are none.
func (e *env) kernelObjects() string {
	var found []string
	srv := e.pair.Server
	if out, err := srv.Run("nft", "list", "table", "inet", "sesame"); err == nil {
		for _, name := range []string{"chain rescue", "set rescue_"} {
			if strings.Contains(out, name) {
				found = append(found, "nft "+name)
			}
		}
	}
	if out, _ := srv.Run("ipset", "list", "-n"); strings.Contains(out, "sesame-rescue") {
		found = append(found, "ipset sesame-rescue")
	}
	for _, bin := range []string{"iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"} {
		if out, _ := srv.Run(bin, "-S"); strings.Contains(out, "SESAME-RESCUE") {
			found = append(found, bin+" SESAME-RESCUE")
		}
	}
	return strings.Join(found, ", ")
}

// noPids fails unless no process runs in the server namespace.
// noPids checks that nothing of the killed daemon lives on in the server
// namespace. A SIGKILL can land while the daemon waits for an iptables,
// ipset or nft it started (the heartbeat refreshes every After/3): that
// child finishes its one change on its own and exits, so a firewall tool
// is given a few seconds to do so; anything else, or a tool still there
// after that, is a leak.
func (e *env) noPids() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "pids", e.pair.Server.Name).Output()
		if err != nil {
			e.t.Fatal(err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		var left []string
		transient := true
		for _, pid := range pids {
			cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
			if err != nil {
				continue // exited since ip listed it
			}
			argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
			left = append(left, pid+" "+strings.Join(argv, " "))
			// An empty command line is a process that is exiting (its
			// memory is gone: a firewall tool the killed stand-in left,
			// reaped by init in a moment); it must still be gone by the
			// deadline.
			if argv[0] != "" && !isFirewallTool(argv[0]) {
				transient = false
			}
		}
		if len(left) == 0 {
			continue
		}
		if !transient || time.Now().After(deadline) {
			e.t.Fatalf("processes still running in the server namespace:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isFirewallTool reports whether argv0 is one of the tools core/firewall
// runs for a change (the ones a killed daemon may leave finishing).
func isFirewallTool(argv0 string) bool {
	base := argv0[strings.LastIndexByte(argv0, '/')+1:]
	for _, tool := range []string{"iptables", "ip6tables", "ipset", "nft", "xtables"} {
		if strings.HasPrefix(base, tool) {
			return true
		}
	}
	return false
}

func rescueConfig(v variant) helperConfig {
	return helperConfig{Kind: v.kind.String(), Ports: fmt.Sprintf("%d/tcp,%d/tcp", guardedRescue, plainRescue),
		After: testAfter, From: []string{netnstest.ClientAddr4.String() + "/32", netnstest.ClientAddr6.String() + "/128"}}
}

// TestDeadMansSwitch is the acceptance test, per firewall family:
// the rescue stays closed while a daemon refreshes the heartbeat, opens
// within Rescue_After + 2s of a SIGKILL with no process left (and not
// before the last heartbeat lapses), closes after a restart's READY,
// opens again when the daemon hangs (SIGSTOP) and closes when it
// resumes; Rescue_From is honoured throughout, and grants still pass the
// closed rescue. While a stand-in runs, an opening is excused when the
// stand-in's own report shows it refreshed too late (a loaded machine);
// see judgeKept.
func TestDeadMansSwitch(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, v, guardedRescue, plainRescue)
			hc := rescueConfig(v)

			d1 := e.startDaemon(hc)
			e.waitKept(d1, "", d1.ready)
			// Past Rescue_After: only the refreshes keep it closed.
			e.holdKept(d1, "", testAfter+time.Second)

			// Both jumps at the top of INPUT, in their own chains.
			if v.kind != firewall.NFTables {
				for _, bin := range v.bins {
					rules := e.pair.Server.MustRun(bin, "-S", "INPUT")
					if !strings.Contains(rules, "-P INPUT DROP\n-A INPUT -j SESAME\n-A INPUT -j SESAME-RESCUE\n") {
						t.Errorf("%s INPUT does not start with both jumps:\n%s", bin, rules)
					}
				}
			}
			// A grant still passes the closed rescue (nftables: rescue_closed
			// and guard both let it through), for its port only.
			e.do(func() error {
				return e.fw.Grant(context.Background(), firewall.Grant{ID: "g1", Src: otherClient4,
					Ports: []knock.Port{{Num: guardedRescue, Proto: knock.TCP}}, Deadline: time.Now().Add(time.Minute)}, time.Now())
			})
			e.waitKept(d1, fmt.Sprintf("%s:%d", otherClient4, guardedRescue), time.Now())
			e.do(func() error { return e.fw.Revoke(context.Background(), firewall.Grant{ID: "g1"}) })
			e.do(func() error {
				recreated, err := e.fw.(firewall.BaseKeeper).EnsureBase(context.Background())
				if recreated {
					t.Error("the grants backend had to repair its objects next to the rescue's")
				}
				return err
			})
			e.waitKept(d1, "", time.Now())

			killed := d1.signal(t, syscall.SIGKILL)
			d1.cmd.Wait() // its report is complete
			e.noPids()
			// An opening while the last heartbeat held fails waitLapse.
			took := e.waitLapse(d1, killed, testAfter+2*time.Second)
			t.Logf("SIGKILL: rescue open after %s (Rescue_After %s)", took.Round(time.Millisecond), testAfter)

			d2 := e.startDaemon(hc)
			took = e.waitKept(d2, "", d2.ready)
			t.Logf("restart: rescue closed %s after ready", took.Round(time.Millisecond))

			stopped := d2.signal(t, syscall.SIGSTOP)
			took = e.waitState(rescueOpen(), stopped, testAfter+2*time.Second)
			t.Logf("SIGSTOP: rescue open after %s", took.Round(time.Millisecond))
			resumed := d2.signal(t, syscall.SIGCONT)
			took = e.waitKept(d2, "", resumed)
			t.Logf("SIGCONT: rescue closed after %s", took.Round(time.Millisecond))
			if log := d2.stderr.String(); !strings.Contains(log, "rescue-close") {
				t.Errorf("resumed daemon did not log rescue-close:\n%s", log)
			}
		})
	}
}

// TestNotConfigured: without Rescue_Ports nothing opens, and a rescue an
// earlier config left is removed, so it cannot lapse open either.
func TestNotConfigured(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			// The admin accepts only the guarded port, as without a rescue.
			e := newEnv(t, v, guardedRescue)
			if got := e.state(); got != "" {
				t.Fatalf("admin firewall leaks: %q", got)
			}
			hc := rescueConfig(v)
			d := e.startDaemon(hc)
			d.signal(t, syscall.SIGKILL)
			d.cmd.Wait()
			if e.kernelObjects() == "" {
				t.Fatal("the stand-in daemon left no rescue to clean up")
			}

			off := e.newSwitch(v.kind, firewall.RescueSpec{})
			e.do(func() error { return off.Start(context.Background()) })
			if got := e.kernelObjects(); got != "" {
				t.Errorf("rescue objects left after a start without Rescue_Ports: %s", got)
			}
			e.holdState("", testAfter+time.Second)
		})
	}
}

// TestOpenCloseInProcess drives Open, Close and Status directly, with
// Rescue_From empty (everyone).
func TestOpenCloseInProcess(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, v, guardedRescue, plainRescue)
			ctx := context.Background()
			s := e.newSwitch(v.kind, firewall.RescueSpec{After: 30 * time.Second, Ports: []knock.Port{
				{Num: guardedRescue, Proto: knock.TCP}, {Num: plainRescue, Proto: knock.TCP}}})
			e.do(func() error { return s.Start(ctx) })
			if got := e.state(); got != "" {
				t.Fatalf("after Start: reachable %q", got)
			}
			var st Status
			e.do(func() (err error) { st, err = s.Status(ctx); return err })
			if !st.Installed || st.Open || st.Held || st.Left < 25*time.Second || st.Left > 30*time.Second {
				t.Errorf("status after Start: %+v", st)
			}

			e.do(func() error { return s.Open(ctx, "") })
			everyone := fmt.Sprintf("10.77.0.2:%[1]d 10.77.0.2:%[2]d fd77::2:%[1]d fd77::2:%[2]d 10.77.0.3:%[1]d 10.77.0.3:%[2]d fd77::3:%[1]d fd77::3:%[2]d",
				guardedRescue, plainRescue)
			if got := e.reaches(everyone, 10*time.Second); got != everyone {
				t.Errorf("after Open: reachable %q, want %q", got, everyone)
			}
			e.do(func() (err error) { st, err = s.Status(ctx); return err })
			if !st.Open || !st.Held || !strings.HasPrefix(st.String(), "rescue OPEN") {
				t.Errorf("status after Open: %+v %q", st, st)
			}
			// A healthy daemon's tick must not close a held rescue.
			e.do(func() error { return s.Tick(ctx, true, "") })
			if got := e.reaches(everyone, 10*time.Second); got != everyone {
				t.Errorf("held, after a heartbeat: reachable %q", got)
			}

			e.do(func() error { return s.Close(ctx) })
			e.waitState("", time.Now(), 2*time.Second)
			e.do(func() (err error) { st, err = s.Status(ctx); return err })
			if st.Open || st.Held || !strings.HasPrefix(st.String(), "rescue closed") {
				t.Errorf("status after Close: %+v %q", st, st)
			}

			e.do(func() error { return s.Remove(ctx) })
			if got := e.kernelObjects(); got != "" {
				t.Errorf("after Remove: %s", got)
			}
			e.do(func() error {
				_, err := e.fw.(firewall.BaseKeeper).EnsureBase(ctx)
				return err
			})
		})
	}
}

// TestSweepOtherFamily: switching Firewall= moves the rescue; the old
// family's objects go, or they would lapse open on their own.
func TestSweepOtherFamily(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTools(t, "ipset", "nft", "iptables-nft", "iptables-legacy")
	p := netnstest.NewPair(t)
	netnstest.RequireExecInNS(t, p.Server)
	e := &env{t: t, pair: p}
	ctx := context.Background()
	ports := []knock.Port{{Num: 22, Proto: knock.TCP}}
	for _, step := range []struct {
		kind firewall.Kind
		want string
	}{
		{firewall.IPTablesNFT, "ipset sesame-rescue, iptables-nft SESAME-RESCUE, ip6tables-nft SESAME-RESCUE"},
		{firewall.IPTablesLegacy, "ipset sesame-rescue, iptables-legacy SESAME-RESCUE, ip6tables-legacy SESAME-RESCUE"},
		{firewall.NFTables, "nft chain rescue, nft set rescue_"},
		{firewall.IPTablesNFT, "ipset sesame-rescue, iptables-nft SESAME-RESCUE, ip6tables-nft SESAME-RESCUE"},
	} {
		s := e.newSwitch(step.kind, firewall.RescueSpec{Ports: ports, After: 30 * time.Second})
		e.do(func() error { return s.Start(ctx) })
		if got := e.kernelObjects(); got != step.want {
			t.Errorf("after starting on %v: %q, want %q", step.kind, got, step.want)
		}
	}
}

// TestGrantsBackendAfterRescue: the rescue is installed first (sesamed
// reached READY before a reload added a door with Open), then the grants
// backend sets up. core/firewall must adopt the allow4/allow6 sets the
// rescue created, put its jump first without complaint, and both keep
// working.
func TestGrantsBackendAfterRescue(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newBareEnv(t, v, guardedRescue, plainRescue)
			ctx := context.Background()
			s := e.newSwitch(v.kind, firewall.RescueSpec{After: 30 * time.Second, Ports: []knock.Port{
				{Num: guardedRescue, Proto: knock.TCP}, {Num: plainRescue, Proto: knock.TCP}}})
			e.do(func() error { return s.Start(ctx) })

			var fwLog syncbuf.Buffer
			e.setupGrants(hclog.New(&hclog.LoggerOptions{Output: &fwLog, Level: hclog.Debug}))
			e.do(func() error {
				recreated, err := e.fw.(firewall.BaseKeeper).EnsureBase(ctx)
				if recreated {
					t.Error("grants backend rebuilt its objects on a second look")
				}
				return err
			})
			if log := fwLog.String(); strings.Contains(log, "[WARN]") {
				t.Errorf("grants backend warned:\n%s", log)
			}
			var st Status
			e.do(func() (err error) { st, err = s.Status(ctx); return err })
			if !st.Installed || st.Open {
				t.Errorf("rescue after the grants backend set up: %s", st)
			}
			if v.kind != firewall.NFTables {
				for _, bin := range v.bins {
					rules := e.pair.Server.MustRun(bin, "-S", "INPUT")
					if !strings.Contains(rules, "-P INPUT DROP\n-A INPUT -j SESAME\n-A INPUT -j SESAME-RESCUE\n") {
						t.Errorf("%s INPUT does not start with both jumps:\n%s", bin, rules)
					}
				}
			}
			if got := e.state(); got != "" {
				t.Errorf("closed rescue: reachable %q", got)
			}
			e.do(func() error {
				return e.fw.Grant(ctx, firewall.Grant{ID: "g1", Src: netnstest.ClientAddr6,
					Ports: []knock.Port{{Num: guardedRescue, Proto: knock.TCP}}, Deadline: time.Now().Add(time.Minute)}, time.Now())
			})
			want := fmt.Sprintf("%s:%d", netnstest.ClientAddr6, guardedRescue)
			if got := e.reaches(want, 10*time.Second); got != want {
				t.Errorf("with a grant: reachable %q, want %q", got, want)
			}
			e.do(func() error { return s.Open(ctx, "") })
			everyone := fmt.Sprintf("10.77.0.2:%[1]d 10.77.0.2:%[2]d fd77::2:%[1]d fd77::2:%[2]d 10.77.0.3:%[1]d 10.77.0.3:%[2]d fd77::3:%[1]d fd77::3:%[2]d",
				guardedRescue, plainRescue)
			if got := e.reaches(everyone, 10*time.Second); got != everyone {
				t.Errorf("open rescue: reachable %q, want %q", got, everyone)
			}
			// The open rescue's elements in allow6 must not have cut the
			// real grant short: a minute, not half a second.
			var gs []firewall.Grant
			e.do(func() (err error) { gs, err = e.fw.List(ctx); return err })
			if len(gs) != 1 || gs[0].ID != "g1" || time.Until(gs[0].Deadline) < 50*time.Second {
				t.Errorf("grants after the rescue let the grantee in: %v", gs)
			}
		})
	}
}
