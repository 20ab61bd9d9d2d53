package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Privileged test harness: a server namespace locked down by an admin
// firewall of each flavour, a TCP listener on a guarded port, a client
// namespace with two addresses per family (one to grant, one that must stay
// blocked), and a backend whose every call runs on a thread inside the
// server namespace.

const guardedPort = 2222

var (
	otherClient4 = netip.MustParseAddr("10.77.0.3")
	otherClient6 = netip.MustParseAddr("fd77::3")
	guardedPorts = []knock.Port{{Num: guardedPort, Proto: knock.TCP}}
)

// variant is one backend under test with the admin firewall it runs under.
type variant struct {
	name string
	kind Kind
	bins [2]string // iptables binaries for the admin's rules and inspection; empty for nftables
}

var variants = []variant{
	{"iptables-nft", IPTablesNFT, [2]string{"iptables-nft", "ip6tables-nft"}},
	{"iptables-legacy", IPTablesLegacy, [2]string{"iptables-legacy", "ip6tables-legacy"}},
	{"nftables", NFTables, [2]string{}},
}

func (v variant) isNFT() bool { return v.kind == NFTables }

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install iptables nftables): %v", tool, err)
		}
	}
}

type testEnv struct {
	t    *testing.T
	v    variant
	pair *netnstest.Pair
	b    Backend
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: tWriter{t}})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestEnv builds the namespaces, locks the server down as the variant's
// admin would, starts the listener and creates and sets up the backend.
func newTestEnv(t *testing.T, v variant) *testEnv {
	t.Helper()
	e := newTestEnvNoSetup(t, v)
	e.must(e.in(func(ctx context.Context, b Backend) error { return b.Setup(ctx, guardedPorts) }))
	return e
}

// newTestEnvNoSetup is newTestEnv without the backend's Setup.
func newTestEnvNoSetup(t *testing.T, v variant) *testEnv {
	t.Helper()
	netnstest.RequireRoot(t)
	requireTools(t, "nft", "iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy")
	pair := netnstest.NewPair(t)
	netnstest.RequireExecInNS(t, pair.Server)
	e := &testEnv{t: t, v: v, pair: pair}
	pair.Client.MustRun("ip", "addr", "add", otherClient4.String()+"/24", "dev", netnstest.ClientIf)
	pair.Client.MustRun("ip", "-6", "addr", "add", otherClient6.String()+"/64", "dev", netnstest.ClientIf, "nodad")
	pinNeighbours(t, pair)
	lockDown(t, pair.Server, v)
	e.listen()
	e.b = e.newBackend()
	return e
}

// pinNeighbours makes the IPv6 neighbour entries permanent on both sides,
// so that IPv6 keeps working when a test flushes the admin's ICMPv6
// accept together with everything else (iptables -F).
func pinNeighbours(t *testing.T, pair *netnstest.Pair) {
	t.Helper()
	mac := func(ns *netnstest.NS, ifname string) string {
		return strings.TrimSpace(ns.MustRun("cat", "/sys/class/net/"+ifname+"/address"))
	}
	srvMAC, cliMAC := mac(pair.Server, netnstest.ServerIf), mac(pair.Client, netnstest.ClientIf)
	for _, a := range []netip.Addr{netnstest.ClientAddr6, otherClient6} {
		pair.Server.MustRun("ip", "-6", "neigh", "replace", a.String(), "lladdr", cliMAC, "dev", netnstest.ServerIf, "nud", "permanent")
	}
	pair.Client.MustRun("ip", "-6", "neigh", "replace", netnstest.ServerAddr6.String(), "lladdr", srvMAC, "dev", netnstest.ClientIf, "nud", "permanent")
}

// lockDown installs the admin's firewall: input dropped except loopback,
// established traffic and ICMPv6 (neighbour discovery); for nftables the
// admin also accepts the guarded port, as the package doc tells them to.
func lockDown(t *testing.T, ns *netnstest.NS, v variant) {
	t.Helper()
	if v.isNFT() {
		nftScript(t, ns, `table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif lo accept
		ct state established,related accept
		meta l4proto ipv6-icmp accept
		tcp dport `+fmt.Sprint(guardedPort)+` accept
	}
}`)
		return
	}
	for i, bin := range v.bins {
		ns.MustRun(bin, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
		ns.MustRun(bin, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		if i == 1 {
			ns.MustRun(bin, "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT")
		}
		ns.MustRun(bin, "-P", "INPUT", "DROP")
	}
}

func nftScript(t *testing.T, ns *netnstest.NS, script string) {
	t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s\n%s", err, out, script)
	}
}

func (e *testEnv) newBackend() Backend {
	e.t.Helper()
	var b Backend
	e.must(e.pair.Server.Do(func() (err error) {
		b, err = New(e.v.kind, testLogger(e.t))
		return err
	}))
	return b
}

// in runs fn on a thread inside the server namespace.
func (e *testEnv) in(fn func(ctx context.Context, b Backend) error) error {
	return e.pair.Server.Do(func() error { return fn(context.Background(), e.b) })
}

func (e *testEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) grant(g Grant) {
	e.t.Helper()
	e.must(e.in(func(ctx context.Context, b Backend) error { return b.Grant(ctx, g, time.Now()) }))
}

func (e *testEnv) revoke(g Grant) {
	e.t.Helper()
	e.must(e.in(func(ctx context.Context, b Backend) error { return b.Revoke(ctx, g) }))
}

func (e *testEnv) list() []Grant {
	e.t.Helper()
	var gs []Grant
	e.must(e.in(func(ctx context.Context, b Backend) (err error) {
		gs, err = b.List(ctx)
		return err
	}))
	return gs
}

func (e *testEnv) reconcile(want ...Grant) Report {
	e.t.Helper()
	var rep Report
	e.must(e.in(func(ctx context.Context, b Backend) (err error) {
		rep, err = Reconcile(ctx, b, want, time.Now())
		return err
	}))
	return rep
}

func (e *testEnv) listen() { e.pair.Server.Serve(e.t, guardedPort) }

// dial connects from src (a client address) to the server's address of
// the same family on the guarded port. A drop shows up as a timeout.
func (e *testEnv) dial(src netip.Addr, timeout time.Duration) error {
	dst := netnstest.ServerAddr4
	if src.Is6() {
		dst = netnstest.ServerAddr6
	}
	return e.pair.Client.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, guardedPort).String())
		if err == nil {
			c.Close()
		}
		return err
	})
}

const (
	openTimeout    = 2 * time.Second        // a connect that should work gets this long
	blockedTimeout = 300 * time.Millisecond // a connect that should be dropped gets this long
)

func (e *testEnv) wantOpen(src netip.Addr, why string) {
	e.t.Helper()
	if err := e.dial(src, openTimeout); err != nil {
		e.t.Fatalf("%s: %s cannot connect: %v", why, src, err)
	}
}

func (e *testEnv) wantBlocked(src netip.Addr, why string) {
	e.t.Helper()
	if err := e.dial(src, blockedTimeout); err == nil {
		e.t.Fatalf("%s: %s connected, want it blocked", why, src)
	}
}

// entries counts Sesame's grant entries as the firewall's own tools show
// them: rules in the SESAME chains, or elements of allow4 and allow6.
func (e *testEnv) entries() int {
	e.t.Helper()
	n := 0
	if e.v.isNFT() {
		for _, set := range []string{nftAllow4, nftAllow6} {
			n += len(nftElements(e.t, e.pair.Server, set))
		}
		return n
	}
	for _, bin := range e.v.bins {
		out, err := e.pair.Server.Run(bin, "-S", ipChain)
		if err != nil {
			continue // no chain: no entries
		}
		n += strings.Count(out, "-A "+ipChain+" ")
	}
	return n
}

// jumps counts the jumps to SESAME in INPUT, per binary.
func (e *testEnv) jumps() [2]int {
	var n [2]int
	for i, bin := range e.v.bins {
		for _, l := range strings.Split(e.pair.Server.MustRun(bin, "-S", ipInput), "\n") {
			if isJump(l) {
				n[i]++
			}
		}
	}
	return n
}

type nftElem struct {
	Val     json.RawMessage `json:"val"`
	Timeout int             `json:"timeout"`
	Expires int             `json:"expires"`
	Comment string          `json:"comment"`
}

// nftElements lists a set of table inet sesame with `nft -j`.
func nftElements(t *testing.T, ns *netnstest.NS, set string) []nftElem {
	t.Helper()
	out, err := ns.Run("nft", "-j", "list", "set", "inet", nftTable, set)
	if err != nil {
		return nil
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				// An element with a timeout or comment is {"elem": {...}},
				// a bare one just its value.
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s: %v\n%s", set, err, out)
	}
	var els []nftElem
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			var wrapped struct {
				Elem *nftElem `json:"elem"`
			}
			if err := json.Unmarshal(raw, &wrapped); err == nil && wrapped.Elem != nil {
				els = append(els, *wrapped.Elem)
			} else {
				els = append(els, nftElem{Val: raw})
			}
		}
	}
	return els
}

// saveNoise is what differs between two saves of the same rules.
var saveNoise = regexp.MustCompile(`(?m)^#.*\n|\[\d+:\d+\]`)

// adminRules is the whole firewall as its tools print it, with Sesame's
// parts cut out: lines naming SESAME for iptables, table inet sesame for
// nftables.
func adminRules(t *testing.T, ns *netnstest.NS, v variant) string {
	t.Helper()
	var keep []string
	if v.isNFT() {
		inSesame := false
		for _, l := range strings.Split(ns.MustRun("nft", "list", "ruleset"), "\n") {
			switch {
			case l == "table inet "+nftTable+" {":
				inSesame = true
			case inSesame && l == "}":
				inSesame = false
			case !inSesame:
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	for _, bin := range v.bins {
		out := saveNoise.ReplaceAllString(ns.MustRun(bin+"-save"), "")
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, ipChain) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "\n")
}

// sesameObjects reports what of Sesame's is left in the firewall.
func sesameObjects(t *testing.T, ns *netnstest.NS, v variant) string {
	t.Helper()
	if v.isNFT() {
		out := ns.MustRun("nft", "list", "tables")
		if strings.Contains(out, "inet "+nftTable) {
			return out
		}
		return ""
	}
	var left []string
	for _, bin := range v.bins {
		for _, l := range strings.Split(ns.MustRun(bin, "-S"), "\n") {
			if strings.Contains(l, ipChain) {
				left = append(left, bin+": "+l)
			}
		}
	}
	return strings.Join(left, "\n")
}

// pollUntil calls cond every step until it returns true or within passes.
func pollUntil(within, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// drops counts packets the server namespace's firewall dropped: Sesame's
// guard counter (nftables) or the INPUT policy's counters (iptables).
func (e *testEnv) drops() int {
	total := 0
	if e.v.isNFT() {
		out, _ := e.pair.Server.Run("nft", "list", "chain", "inet", "sesame", "guard")
		for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
		return total
	}
	for _, bin := range e.v.bins {
		out, _ := e.pair.Server.Run(bin, "-L", "INPUT", "-v", "-x", "-n")
		if m := regexp.MustCompile(`policy DROP (\d+) packets`).FindStringSubmatch(out); m != nil {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	return total
}
