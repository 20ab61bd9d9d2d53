package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Native grants (Open = 2222/tcp) on a host whose firewall drops
// everything else, for each backend, IPv4 and IPv6.

const protected = 2222

// lockDown makes the server namespace drop incoming connections the way
// an admin's firewall would, in the given backend.
func lockDown(t testing.TB, ns *netnstest.NS, backend string) {
	switch backend {
	case "iptables-nft", "iptables-legacy":
		suffix := strings.TrimPrefix(backend, "iptables")
		for _, tool := range []string{"iptables" + suffix, "ip6tables" + suffix} {
			ns.MustRun(tool, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
			ns.MustRun(tool, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
			if strings.HasPrefix(tool, "ip6") {
				ns.MustRun(tool, "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT")
			}
			ns.MustRun(tool, "-P", "INPUT", "DROP")
		}
	case "nftables":
		loadAdminNFT(t, ns)
	}
}

// adminRules is an admin's native ruleset with policy drop; it accepts
// the port it delegates to Sesame, whose own table drops it for everyone
// not granted (see core/firewall's package doc).
const adminRules = `table inet filter {
	chain input {
		type filter hook input priority 0; policy drop;
		iif lo accept
		ct state established,related accept
		meta l4proto ipv6-icmp accept
		tcp dport 2222 accept
	}
}
`

func listen(t testing.TB, ns *netnstest.NS) { ns.Serve(t, protected) }

// connects reports whether a TCP connection from the client namespace
// (from src when valid) to dst:2222 completes.
func connects(ns *netnstest.NS, src, dst netip.Addr) bool {
	return ns.Connects(src, dst, protected, 300*time.Millisecond)
}

func nativeConf(backend string, timeout string) string {
	return fmt.Sprintf(`[options]
	Interface = sesame0
	Firewall = %s
	Reconcile_Interval = 1
[ssh]
	sequence = 7000,8000,9000
	seq_timeout = 5
	tcpflags = syn
	Open = %d/tcp
	Open_Timeout = %s
`, backend, protected, timeout)
}

// entries counts Sesame's kernel entries for the protected port.
func entries(t *testing.T, ns *netnstest.NS, backend string) int {
	if backend == "nftables" {
		// One element per grant in allow4/allow6, each with its comment.
		out, _ := ns.Run("nft", "list", "table", "inet", "sesame")
		return strings.Count(out, `comment "sesame id=`)
	}
	suffix := strings.TrimPrefix(backend, "iptables")
	n := 0
	for _, tool := range []string{"iptables" + suffix, "ip6tables" + suffix} {
		out, _ := ns.Run(tool, "-S", "SESAME")
		n += strings.Count(out, "-j ACCEPT")
	}
	return n
}

var backends = []string{"iptables-nft", "iptables-legacy", "nftables"}

func TestNativeGrantOpensClosesAndIsRepaired(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, backend := range backends {
		for _, fam := range []string{"ipv4", "ipv6"} {
			t.Run(backend+"/"+fam, func(t *testing.T) {
				t.Parallel()
				p := netnstest.NewPair(t)
				lockDown(t, p.Server, backend)
				listen(t, p.Server)
				server, args := netnstest.ServerAddr4, []string{netnstest.ServerAddr4.String()}
				if fam == "ipv6" {
					server, args = netnstest.ServerAddr6, []string{"-6", netnstest.ServerAddr6.String()}
				}
				d := startSesamed(t, p.Server, nativeConf(backend, "3"))
				if connects(p.Client, netip.Addr{}, server) {
					t.Fatal("connected before knocking")
				}
				k := knockers[0]
				k.knock(t, p.Client, append(args, "7000", "8000", "9000")...)
				opened := time.Now()
				if !poll(2*time.Second, func() bool { return connects(p.Client, netip.Addr{}, server) }) {
					t.Fatalf("cannot connect after knocking; output:\n%s", d.out.String())
				}
				// A repeat knock extends the grant without a second entry.
				k.knock(t, p.Client, append(args, "7000", "8000", "9000")...)
				d.waitLog("grant extended", 3*time.Second)
				opened = time.Now()
				// (An extension adds the new entry before deleting the old
				// one, so two may show for a moment; never more, never zero.)
				if !poll(2*time.Second, func() bool { return entries(t, p.Server, backend) == 1 }) {
					t.Errorf("%d entries after a repeat knock, want 1", entries(t, p.Server, backend))
				}
				// Someone flushes the firewall: repaired within a reconcile period.
				switch backend {
				case "nftables":
					p.Server.MustRun("nft", "flush", "ruleset")
					loadAdminNFT(t, p.Server)
				default:
					suffix := strings.TrimPrefix(backend, "iptables")
					p.Server.MustRun("iptables"+suffix, "-F")
					p.Server.MustRun("ip6tables"+suffix, "-F")
				}
				d.waitLog("were missing", 3*time.Second)
				if !poll(2*time.Second, func() bool { return connects(p.Client, netip.Addr{}, server) }) {
					t.Fatalf("grant not repaired after the flush; output:\n%s", d.out.String())
				}
				// Closed again at the deadline (3 s after the last knock).
				if !poll(5*time.Second, func() bool { return !connects(p.Client, netip.Addr{}, server) }) {
					t.Fatalf("still open 5 s after a 3 s grant")
				}
				if el := time.Since(opened); el < 2900*time.Millisecond {
					t.Errorf("closed %v after the knock, before the 3 s deadline", el)
				}
			})
		}
	}
}

func loadAdminNFT(t testing.TB, ns *netnstest.NS) {
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(adminRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

// With nftables the grant expires in the kernel: kill the daemon and the
// port still closes at the deadline.
func TestNFTablesGrantExpiresWithTheDaemonDead(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	loadAdminNFT(t, p.Server)
	listen(t, p.Server)
	d := startSesamed(t, p.Server, nativeConf("nftables", "3"))
	knockers[1].knock(t, p.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
	knocked := time.Now()
	if !poll(2*time.Second, func() bool { return connects(p.Client, netip.Addr{}, netnstest.ServerAddr4) }) {
		t.Fatalf("cannot connect after knocking; output:\n%s", d.out.String())
	}
	d.kill()
	if !connects(p.Client, netip.Addr{}, netnstest.ServerAddr4) && time.Since(knocked) < 2500*time.Millisecond {
		t.Fatal("the grant vanished with the daemon")
	}
	if !poll(5*time.Second, func() bool { return !connects(p.Client, netip.Addr{}, netnstest.ServerAddr4) }) {
		t.Fatal("port still open after the deadline with no daemon")
	}
	if el := time.Since(knocked); el < 2900*time.Millisecond || el > 4500*time.Millisecond {
		t.Errorf("closed %v after the knock; deadline was 3 s", el)
	}
	// Another address never got in.
	p.Client.MustRun("ip", "addr", "add", "10.77.0.3/24", "dev", netnstest.ClientIf)
	if connects(p.Client, netip.MustParseAddr("10.77.0.3"), netnstest.ServerAddr4) {
		t.Error("an address that never knocked connects")
	}
}

// A clean stop and start: grants stay journaled and are applied again; on
// iptables the chain goes with the daemon (fail closed), on nftables the
// table stays and its elements expire by themselves.
func TestNativeGrantAcrossACleanRestart(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, backend := range []string{"iptables-nft", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			p := netnstest.NewPair(t)
			lockDown(t, p.Server, backend)
			listen(t, p.Server)
			dir := t.TempDir()
			d := startSesamedIn(t, p.Server, dir, nativeConf(backend, "8"))
			knockers[0].knock(t, p.Client, netnstest.ServerAddr4.String(), "7000", "8000", "9000")
			knocked := time.Now()
			reach := func() bool { return connects(p.Client, netip.Addr{}, netnstest.ServerAddr4) }
			if !poll(2*time.Second, reach) {
				t.Fatal("grant did not open")
			}
			d.stop()
			switch backend {
			case "nftables":
				if !reach() {
					t.Error("nftables grant closed by a clean stop")
				}
			default:
				if reach() {
					t.Error("iptables grant still open with the daemon stopped")
				}
				if out, _ := p.Server.Run("iptables-nft", "-S"); strings.Contains(out, "SESAME") {
					t.Errorf("SESAME chain left after a clean stop:\n%s", out)
				}
			}
			d = startSesamedIn(t, p.Server, dir, nativeConf(backend, "8"))
			d.waitLog("resuming grant", 5*time.Second)
			if !poll(2*time.Second, reach) {
				t.Fatal("resumed grant not applied after the restart")
			}
			// Still closes at the original deadline.
			if !poll(10*time.Second, func() bool { return !reach() }) {
				t.Fatal("resumed grant never closed")
			}
			if el := time.Since(knocked); el < 7900*time.Millisecond || el > 9500*time.Millisecond {
				t.Errorf("closed %v after the knock, deadline was 8 s", el)
			}
		})
	}
}
