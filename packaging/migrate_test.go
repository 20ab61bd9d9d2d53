package packaging

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// knockdExamples returns the configuration examples of knockd(1), as the
// installed page has them (the .nf/.fi blocks, roff escapes undone).
func knockdExamples(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/usr/share/man/man1/knockd.1.gz")
	if err != nil {
		t.Fatalf("knockd(1) (apt-get install knockd): %v", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur *strings.Builder
	sc := bufio.NewScanner(z)
	for sc.Scan() {
		switch l := sc.Text(); {
		case l == ".nf":
			cur = &strings.Builder{}
		case l == ".fi" && cur != nil:
			if strings.HasPrefix(cur.String(), "[options]") { // not the AUTHOR block
				out = append(out, cur.String())
			}
			cur = nil
		case cur != nil:
			cur.WriteString(strings.ReplaceAll(l, `\-`, "-") + "\n")
		}
	}
	if len(out) != 4 || !strings.Contains(out[0], "logfile = /var/log/knockd.log") || !strings.Contains(out[2], "one_time_sequences = /etc/knockd/smtp_sequences") {
		t.Fatalf("knockd(1) examples not as expected: %q", out)
	}
	return out
}

// TestMigrateFromKnockd follows the README's "Migrating from knockd" on
// a knockd user's machine under a real systemd: Debian's knockd running
// on the interface /etc/default/knockd names, then the README's commands
// one by one. Then Debian's /etc/knockd.conf and the four examples of
// knockd(1) pass `sesame check` and run unchanged under the shipped
// unit, logging to /var/log/knockd.log and marking one-time sequences in
// /etc/knockd; and a LogFile the unit forbids is refused by the check,
// does not start, and starts with the drop-in the check proposes.
func TestMigrateFromKnockd(t *testing.T) {
	netnstest.RequireRoot(t)
	needTools(t, "knock", "knockd", "dpkg-deb", "apt-get", "iptables", "nsenter")
	examples := knockdExamples(t)
	deb, _ := packages(t, "1.0.0")
	guardHost(t)
	m := bootMachine(t, deb)
	client := netnstest.ClientAddr4.String()
	ssh := func() (bool, string) {
		out, err := m.Run("iptables", "-w", "-C", "INPUT", "-s", client, "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		return err == nil, out
	}
	noSSH := func() (bool, string) { ok, out := ssh(); return !ok, out }
	// knockUntil knocks with Debian's knock until cond holds.
	knockUntil := func(what string, cond func() (bool, string), ports ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			m.peer.MustRun(append([]string{"knock", netnstest.ServerAddr4.String()}, ports...)...)
			for i := 0; i < 30; i++ {
				if ok, _ := cond(); ok {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			if time.Now().After(deadline) {
				_, state := cond()
				t.Fatalf("%s: knocking %v did not do it: %s\n%s", what, ports, state, m.journal())
			}
		}
	}

	t.Log("a knockd user's machine: knockd on the interface KNOCKD_OPTS names, Debian's /etc/knockd.conf")
	m.must("sed", "-i", `s/^#*KNOCKD_OPTS=.*/KNOCKD_OPTS="-i `+netnstest.ServerIf+`"/`, "/etc/default/knockd")
	m.must("systemctl", "enable", "--now", "knockd.service")
	if err := m.WaitActive("knockd.service", time.Minute); err != nil {
		t.Fatal(err)
	}
	knockUntil("knockd opens ssh", ssh, "7000", "8000", "9000")
	knockUntil("knockd closes ssh", noSSH, "9000", "8000", "7000")

	t.Log("README: apt install ./sesame_*.deb; sesame check /etc/knockd.conf")
	m.apt("install", pkgDir+"/"+filepath.Base(deb))
	out := m.must("sesame", "check", "/etc/knockd.conf")
	for _, want := range []string{"/etc/knockd.conf: OK, 3 door(s)", "warning: knockd is running (pid "} {
		if !strings.Contains(out, want) {
			t.Errorf("sesame check /etc/knockd.conf: no %q in:\n%s", want, out)
		}
	}
	t.Log("README: install -m 0600 /etc/knockd.conf /etc/sesame/sesame.conf; KNOCKD_OPTS -i becomes Interface")
	m.must("install", "-m", "0600", "/etc/knockd.conf", confPath)
	iface := strings.TrimSpace(m.must("sh", "-c", `. /etc/default/knockd; set -- $KNOCKD_OPTS; while [ $# -gt 0 ]; do [ "$1" = -i ] && echo "$2"; shift; done`))
	if iface != netnstest.ServerIf {
		t.Fatalf("KNOCKD_OPTS names %q", iface)
	}
	m.must("sed", "-i", `/^\[options\]$/a\	Interface = `+iface, confPath)
	if out := m.must("sesame", "check", confPath); !strings.Contains(out, confPath+": OK, 3 door(s)") {
		t.Errorf("sesame check %s:\n%s", confPath, out)
	}
	t.Log("README: systemctl disable --now knockd; systemctl enable --now sesamed")
	m.must("systemctl", "disable", "--now", "knockd.service")
	m.must("systemctl", "enable", "--now", unit)
	if err := m.WaitActive(unit, time.Minute); err != nil {
		t.Fatal(err)
	}
	m.knock("openSSH", "7000", "8000", "9000")
	m.waitFor("sesamed ran knockd.conf's openSSH command", 10*time.Second, ssh)
	m.knock("closeSSH", "9000", "8000", "7000")
	m.waitFor("sesamed ran knockd.conf's closeSSH command", 10*time.Second, noSSH)
	if out := m.must("sesame", "check", confPath); strings.Contains(out, "knockd is running") {
		t.Errorf("knockd still running after systemctl disable --now knockd:\n%s", out)
	}

	t.Log("Debian's /etc/knockd.conf unchanged: no Interface, the default route's interface")
	m.must("ip", "route", "add", "default", "via", client, "dev", netnstest.ServerIf)
	m.must("cp", "/etc/knockd.conf", confPath)
	if got, want := m.must("cat", confPath), m.must("cat", "/etc/knockd.conf"); got != want {
		t.Fatalf("copy differs")
	}
	if out := m.must("sesame", "check", confPath); !strings.Contains(out, "sesamed listens on "+netnstest.ServerIf+" (the default route's)") {
		t.Errorf("sesame check:\n%s", out)
	}
	m.must("systemctl", "restart", unit)
	m.knock("openSSH", "7000", "8000", "9000")
	m.waitFor("openSSH under the unchanged knockd.conf", 10*time.Second, ssh)
	m.knock("closeSSH", "9000", "8000", "7000")
	m.waitFor("closeSSH under the unchanged knockd.conf", 10*time.Second, noSSH)

	t.Log("knockd(1)'s examples, unchanged: /var/log/knockd.log and /etc/knockd/smtp_sequences under the unit")
	// What a knockd user of examples 3 and 4 has: the sequences file.
	m.must("mkdir", "-p", "/etc/knockd")
	if err := m.WriteFile("/etc/knockd/smtp_sequences", []byte(" 2000,3000,4000\n 2001,3001,4001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := newPeerSender(t, m)
	const knockdLog = "/var/log/knockd.log"
	logCount := func(s string) int {
		b, _ := m.ReadFile(knockdLog)
		return strings.Count(string(b), s)
	}
	rawKnocks := [][]rawsend.Spec{
		nil, // example 1: Debian's knock will do
		{{DstPort: 2222, Proto: knock.UDP}, {DstPort: 3333, Proto: knock.TCP, Flags: knock.SYN | knock.ACK}, {DstPort: 4444, Proto: knock.UDP}},
		{{DstPort: 2000, Proto: knock.TCP, Flags: knock.FIN}, {DstPort: 3000, Proto: knock.TCP, Flags: knock.FIN}, {DstPort: 4000, Proto: knock.TCP, Flags: knock.FIN}},
		{{DstPort: 2001, Proto: knock.TCP, Flags: knock.FIN}, {DstPort: 3001, Proto: knock.TCP, Flags: knock.FIN}, {DstPort: 4001, Proto: knock.TCP, Flags: knock.FIN}},
	}
	doors := []string{"openSSH", "opencloseSSH", "opencloseSMTP", "opencloseSMTP"}
	for i, ex := range examples {
		if err := m.WriteFile(confPath, []byte(ex), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := m.Run("sesame", "check", confPath); err != nil || !strings.Contains(out, confPath+": OK, ") {
			t.Fatalf("example %d: sesame check: %v\n%s", i+1, err, out)
		}
		starts := logCount("starting up")
		// More starts in two minutes than StartLimitBurst= allows.
		m.must("systemctl", "reset-failed", unit)
		m.must("systemctl", "restart", unit)
		m.waitFor(fmt.Sprintf("example %d: sesamed's start in %s", i+1, knockdLog), 10*time.Second, func() (bool, string) {
			return logCount("starting up") > starts, m.must("tail", "-3", knockdLog)
		})
		want := client + ": " + doors[i] + ": OPEN SESAME"
		opens := logCount(want)
		opened := func() (bool, string) { return logCount(want) > opens, m.must("tail", "-3", knockdLog) }
		if rawKnocks[i] == nil {
			knockUntil(fmt.Sprintf("example %d", i+1), opened, "7000", "8000", "9000")
		} else {
			raw.knockUntil(t, fmt.Sprintf("example %d", i+1), opened, rawKnocks[i]...)
		}
	}
	if got := m.must("cat", "/etc/knockd/smtp_sequences"); got != "#2000,3000,4000\n#2001,3001,4001\n" {
		t.Errorf("one-time sequences after examples 3 and 4:\n%s", got)
	}

	t.Log("without /var/log/knockd.log systemd leaves ReadWritePaths=-/var/log/knockd.log out: check and start agree; tmpfiles.d makes it")
	if err := m.WriteFile(confPath, []byte(examples[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	m.must("rm", knockdLog)
	if out, err := m.Run("sesame", "check", confPath); err == nil || !strings.Contains(out, confPath+":2: LogFile /var/log/knockd.log is read-only (ProtectSystem=strict)") {
		t.Errorf("sesame check without %s (%v):\n%s", knockdLog, err, out)
	}
	m.Systemctl("reset-failed", unit)
	if _, err := m.Systemctl("restart", unit); err == nil {
		t.Errorf("sesamed started without %s, which its sandbox cannot create", knockdLog)
	}
	m.must("systemd-tmpfiles", "--create", "sesame.conf")
	if got := m.must("stat", "-c", "%a %U:%G %s", knockdLog); got != "600 root:root 0\n" {
		t.Errorf("tmpfiles.d made %s %q", knockdLog, got)
	}
	m.must("sesame", "check", confPath)
	m.Systemctl("reset-failed", unit)
	m.must("systemctl", "restart", unit)
	m.waitFor("sesamed's start in the recreated "+knockdLog, 10*time.Second, func() (bool, string) {
		return logCount("starting up") > 0, m.must("cat", knockdLog)
	})

	t.Log("a LogFile the unit forbids: the check says so with the fix, the start fails, the fix works")
	bad := strings.Replace(examples[0], "/var/log/knockd.log", "/var/log/other.log", 1)
	if err := m.WriteFile(confPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := m.Run("sesame", "check", confPath)
	for _, want := range []string{confPath + ":2: LogFile /var/log/other.log is read-only (ProtectSystem=strict) under /usr/lib/systemd/system/sesamed.service",
		"LogFile = /var/log/sesame/other.log", "[Service]\n\tReadWritePaths=/var/log"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("sesame check of a forbidden LogFile (%v): no %q in:\n%s", err, want, out)
		}
	}
	m.Systemctl("reset-failed", unit)
	if _, err := m.Systemctl("restart", unit); err == nil {
		t.Errorf("sesamed started with a LogFile the unit forbids (the check said it would not)")
	}
	if err := m.WriteFile("/etc/systemd/system/sesamed.service.d/logfile.conf", []byte("[Service]\nReadWritePaths=/var/log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "daemon-reload")
	if out, err := m.Run("sesame", "check", confPath); err != nil {
		t.Errorf("sesame check with the drop-in it proposed: %v\n%s", err, out)
	}
	m.Systemctl("reset-failed", unit)
	m.must("systemctl", "restart", unit)
	m.waitFor("sesamed writes /var/log/other.log", 10*time.Second, func() (bool, string) {
		b, err := m.ReadFile("/var/log/other.log")
		return strings.Contains(string(b), "starting up"), fmt.Sprintf("%q %v", b, err)
	})
}

// peerSender sends crafted knocks from the machine's peer namespace.
type peerSender struct {
	m   *machine
	s   *rawsend.Sender
	dst net.HardwareAddr
}

func newPeerSender(t *testing.T, m *machine) *peerSender {
	t.Helper()
	f := strings.Fields(m.must("ip", "-br", "link", "show", netnstest.ServerIf))
	if len(f) < 3 {
		t.Fatalf("ip -br link: %q", f)
	}
	mac, err := net.ParseMAC(f[2])
	if err != nil {
		t.Fatal(err)
	}
	p := &peerSender{m: m, dst: mac}
	if err := m.peer.Do(func() (err error) {
		p.s, err = rawsend.Open(netnstest.ClientIf)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.s.Close() })
	return p
}

// knockUntil sends the knocks until cond holds.
func (p *peerSender) knockUntil(t *testing.T, what string, cond func() (bool, string), knocks ...rawsend.Spec) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, k := range knocks {
			k.DstMAC, k.SrcIP, k.DstIP, k.SrcPort = p.dst, netnstest.ClientAddr4, netnstest.ServerAddr4, 40000
			if err := p.s.Send(k); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 30; i++ {
			if ok, _ := cond(); ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			_, state := cond()
			t.Fatalf("%s: knocks did not do it: %s\n%s", what, state, p.m.journal())
		}
	}
}
