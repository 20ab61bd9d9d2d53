package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// The check predicts the start (issue 18): every config `sesame check`
// and `sesamed --check` accept starts, and what they refuse (with file
// and line) the daemon cannot start with either. Each config runs in a
// fresh pair of namespaces: its own interfaces and firewall.

// checkIn runs argv in ns and returns its combined output and exit code.
func checkIn(t *testing.T, ns *netnstest.NS, argv ...string) (string, int) {
	t.Helper()
	out, err := ns.Command(argv...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", argv, err)
	}
	return string(out), 0
}

// checks runs both checks on the config at path in ns; --unit none: the
// host may have a sesamed.service installed, the test's daemon does not
// run under it.
func checks(t *testing.T, ns *netnstest.NS, dir, path string) (outs []string, codes []int) {
	t.Helper()
	for _, argv := range [][]string{
		{bin("sesame"), "check", "--unit", "none", path},
		{bin("sesamed"), "--check", "-c", path, "--state-dir", filepath.Join(dir, "state")},
	} {
		out, code := checkIn(t, ns, argv...)
		outs, codes = append(outs, out), append(codes, code)
	}
	return outs, codes
}

func TestCheckAcceptsOnlyWhatStarts(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	accepted := []struct {
		name, conf string
		setup      func(t *testing.T, dir string)
		warn       string // a warning the check must print
	}{
		{name: "files, one-time sequences and a native grant", conf: baseConf + `[options]
	LogFile = {{DIR}}/k.log
	PidFile = {{DIR}}/k.pid
	Firewall = auto
[smtp]
	one_time_sequences = {{DIR}}/smtp_sequences
	tcpflags = fin,!ack
	start_command = echo S %IP% >> {{DIR}}/out
[native]
	sequence = 7100,7200
	Open = 2222/tcp
`, setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "smtp_sequences"), []byte(" 2000,3000\n 2001,3001\n"), 0o600)
		}},
		{name: "iptables-legacy with a rescue port", conf: baseConf + `[options]
	Firewall = iptables-legacy
	Rescue_Ports = 2223/tcp
[native]
	sequence = 7100,7200
	Open = 2222/tcp
`},
		{name: "an interface that is not there yet", conf: strings.Replace(baseConf, "Interface = sesame0", "Interface = sesame0,later0", 1),
			warn: "interface later0 does not exist (yet)"},
		{name: "knockd(1) example 2, logfile moved", conf: baseConf + `[options]
	logfile = {{DIR}}/knockd.log
[opencloseSSH]
	sequence      = 2222:udp,3333:tcp,4444:udp
	seq_timeout   = 15
	tcpflags      = syn,ack
	start_command = echo %IP% >> {{DIR}}/out
	cmd_timeout   = 5
	stop_command  = echo stop %IP% >> {{DIR}}/out
`},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			dir := t.TempDir()
			if c.setup != nil {
				c.setup(t, dir)
			}
			path := filepath.Join(dir, "sesame.conf")
			os.WriteFile(path, []byte(expand(c.conf, dir)), 0o600)
			before := firewallState(t, p.Server)
			outs, codes := checks(t, p.Server, dir, path)
			if after := firewallState(t, p.Server); after != before {
				t.Errorf("the checks changed the firewall:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			for i, code := range codes {
				if code != 0 {
					t.Fatalf("check %d refused it (exit %d):\n%s", i, code, outs[i])
				}
				if !strings.Contains(outs[i], c.warn) {
					t.Errorf("check %d: no warning %q:\n%s", i, c.warn, outs[i])
				}
			}
			e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
			e.d = startSesamedIn(t, p.Server, dir, c.conf)
			e.knock("7000", "8000", "9000")
			if got := e.barrier(); len(got) != 1 {
				t.Errorf("after the start, opened %q", got)
			}
		})
	}

	refused := []struct {
		name, conf string
		setup      func(t *testing.T, p *netnstest.Pair, dir string)
		want       string // in both checks' output, after the config's path
		noStart    bool   // do not try: the daemon would hang, not fail
	}{
		{name: "LogFile in a directory that does not exist", conf: baseConf + "[options]\n\tLogFile = /nonexistent/dir/k.log\n",
			want: ":11: LogFile /nonexistent/dir/k.log: directory /nonexistent/dir does not exist"},
		{name: "PidFile in a directory that does not exist", conf: baseConf + "[options]\n\tPidFile = /nonexistent/dir/k.pid\n",
			want: ":11: PidFile /nonexistent/dir/k.pid: directory /nonexistent/dir does not exist"},
		{name: "LogFile is a FIFO", conf: baseConf + "[options]\n\tLogFile = {{DIR}}/fifo\n",
			setup: func(t *testing.T, _ *netnstest.Pair, dir string) {
				if out, err := exec.Command("mkfifo", filepath.Join(dir, "fifo")).CombinedOutput(); err != nil {
					t.Fatalf("mkfifo: %v %s", err, out)
				}
			},
			want: ":11: LogFile {{DIR}}/fifo is not a regular file (a FIFO)", noStart: true},
		{name: "Firewall = auto with rules in two firewalls", conf: baseConf + "[native]\n\tsequence = 7100\n\tOpen = 2222/tcp\n",
			setup: func(t *testing.T, p *netnstest.Pair, _ string) {
				p.Server.MustRun("iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT")
				p.Server.MustRun("nft", "add table inet filter; add chain inet filter input { type filter hook input priority 0; }; add rule inet filter input tcp dport 22 accept")
			},
			want: ":12: Firewall = auto: firewall: admin rules found in more than one firewall"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			dir := t.TempDir()
			if c.setup != nil {
				c.setup(t, p, dir)
			}
			path := filepath.Join(dir, "sesame.conf")
			os.WriteFile(path, []byte(expand(c.conf, dir)), 0o600)
			outs, codes := checks(t, p.Server, dir, path)
			for i, code := range codes {
				if want := path + expand(c.want, dir); code != 1 || !strings.Contains(outs[i], want) {
					t.Errorf("check %d: exit %d, want 1 with %q:\n%s", i, code, want, outs[i])
				}
			}
			if c.noStart {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.Server.Name, bin("sesamed"), "-c", path,
				"--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "control.sock"))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("sesamed started with a config the check refused (%v):\n%s", err, out)
			}
			// With the check's words, file and line.
			if want := path + expand(c.want, dir); !strings.Contains(string(out), want) {
				t.Errorf("sesamed's start does not say %q:\n%s", want, out)
			}
		})
	}
}

// firewallState is everything the checks could have touched in ns: the
// nftables ruleset (iptables-nft's tables included), iptables-legacy's
// rules and the ipsets.
func firewallState(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{{"nft", "list", "ruleset"}, {"iptables-legacy-save"}, {"ip6tables-legacy-save"}, {"ipset", "list", "-n"}} {
		out, err := ns.Run(argv...)
		if err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
		// Save tools stamp the time: keep the rules.
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// Without Interface the daemon listens where the check says it will,
// in the check's words (issue 18): on eth0, with a warning, when there
// is no default route; on the default route's interface when there is.
func TestInterfaceDefaultAsTheCheckSays(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	conf := strings.Replace(baseConf, "\tInterface = sesame0\n", "", 1)
	for _, c := range []struct {
		route bool
		want  string
	}{
		{false, "no Interface set and no default route: sesamed listens on eth0"},
		{true, "no Interface set: sesamed listens on " + netnstest.ServerIf + " (the default route's)"},
	} {
		if c.route {
			p.Server.MustRun("ip", "route", "add", "default", "via", netnstest.ClientAddr4.String(), "dev", netnstest.ServerIf)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "sesame.conf")
		os.WriteFile(path, []byte(expand(conf, dir)), 0o600)
		outs, codes := checks(t, p.Server, dir, path)
		for i := range outs {
			if codes[i] != 0 || !strings.Contains(outs[i], c.want) {
				t.Errorf("check %d (exit %d) does not say %q:\n%s", i, codes[i], c.want, outs[i])
			}
		}
		d := startSesamedIn(t, p.Server, dir, conf)
		d.waitLog(c.want, 5*time.Second)
		if c.route {
			e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p), d: d}
			e.knock("7000", "8000", "9000")
			if got := e.barrier(); len(got) != 1 {
				t.Errorf("on the default route's interface, opened %q", got)
			}
		}
		d.stop()
	}
}
