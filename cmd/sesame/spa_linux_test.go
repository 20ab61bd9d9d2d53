package main

import (
	"encoding/base64"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/fwknoptest"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// `sesame spa` opens a door on Debian's fwknopd 2.6.10, which sniffs the
// server namespace's veth and grants through iptables inside it; the
// same packet sent again is refused by fwknopd as a replay.
func TestSPAOpensFwknopd(t *testing.T) {
	netnstest.RequireRoot(t)
	fwknoptest.ServerPath(t)
	p := netnstest.NewPair(t)
	requireExecInNS(t, p.Server)
	const port = 2222
	p.Server.Serve(t, port)
	p.Server.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "DROP")
	srv := fwknoptest.Start(t, p.Server, netnstest.ServerIf, "SOURCE ANY\nOPEN_PORTS tcp/2222\n"+
		"KEY_BASE64 "+base64.StdEncoding.EncodeToString(spaKey)+"\n"+
		"HMAC_KEY_BASE64 "+base64.StdEncoding.EncodeToString(spaHMAC)+"\nFW_ACCESS_TIMEOUT 60\n")

	if p.Client.Connects(netnstest.ClientAddr4, netnstest.ServerAddr4, port, 300*time.Millisecond) {
		t.Fatal("port 2222 open before the SPA packet: the test firewall is not in place")
	}
	file := filepath.Join(t.TempDir(), "packet")
	_, errs, code := sesame(t, p.Client, []string{"HOME=" + t.TempDir()}, append([]string{"spa", "-A", "tcp/2222",
		"-a", netnstest.ClientAddr4.String(), "-D", netnstest.ServerAddr4.String(), "-B", file}, keyArgs...)...)
	if code != 0 {
		t.Fatalf("sesame spa: exit %d: %s", code, errs)
	}
	added := "for " + netnstest.ClientAddr4.String() + " -> "
	if !srv.WaitFor(added, 10*time.Second) {
		t.Fatalf("fwknopd added no rule:\n%s", srv.Output())
	}
	deadline := time.Now().Add(5 * time.Second)
	for !p.Client.Connects(netnstest.ClientAddr4, netnstest.ServerAddr4, port, 300*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("port 2222 still closed after fwknopd's rule:\n%s", srv.Output())
		}
	}

	// The saved packet, sent again as one datagram.
	pkt, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Client.Do(func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(netnstest.ServerAddr4, fwknoptest.DefaultPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(strings.TrimSpace(string(pkt))))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !srv.WaitFor("Replay detected from source IP: "+netnstest.ClientAddr4.String(), 10*time.Second) {
		t.Fatalf("fwknopd did not see the replay:\n%s", srv.Output())
	}
	if n := strings.Count(srv.Output(), added); n != 1 {
		t.Errorf("fwknopd added %d rules, want 1:\n%s", n, srv.Output())
	}
}
