package packaging

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/systemdtest"
)

// testConf is what the admin writes into /etc/sesame/sesame.conf: a door
// whose commands use every firewall tool the unit's sandbox must allow
// (iptables-nft, iptables-legacy with its lock, nft) and write a file,
// and a door with a native grant, so Sesame has firewall objects of its
// own for the teardown to remove.
const testConf = `[options]
	Interface = sesame0
	Firewall = nftables
	Rescue_Ports = 2223/tcp

[pkgtest]
	sequence = 7100,7200,7300
	seq_timeout = 10
	tcpflags = syn
	start_command = iptables -w -I INPUT -s %IP% -p tcp --dport 2323 -j ACCEPT && iptables-legacy -w -I INPUT -s %IP% -p tcp --dport 2324 -j ACCEPT && nft add table inet pkgtest && echo %IP% >> /var/lib/sesame/opened
	stop_command = iptables -w -D INPUT -s %IP% -p tcp --dport 2323 -j ACCEPT && iptables-legacy -w -D INPUT -s %IP% -p tcp --dport 2324 -j ACCEPT && nft delete table inet pkgtest && rm /var/lib/sesame/opened
	cmd_timeout = 600

[native]
	sequence = 7400,7500,7600
	seq_timeout = 10
	tcpflags = syn
	Open = 2222/tcp
	Open_Timeout = 600
`

// An added door, appended by an in-place edit (sed -i).
const (
	editSed  = `s/^\[native\]$/[edited]\n\tsequence = 7700,7800,7900\n\tseq_timeout = 10\n\ttcpflags = syn\n\tstart_command = echo %IP% > \/var\/lib\/sesame\/edited\n\n[native]/`
	confPath = "/etc/sesame/sesame.conf"
	unit     = "sesamed.service"
	pkgDir   = "/srv/sesame-pkgs"
)

// machine is a booted systemd in a throw-away root (an overlay of the
// host's root), with helpers that fail the test on error.
type machine struct {
	*systemdtest.System
	t    *testing.T
	peer *netnstest.NS
}

func bootMachine(t *testing.T, pkgs ...string) *machine {
	t.Helper()
	files := map[string]systemdtest.FileSpec{}
	for _, p := range pkgs {
		files[pkgDir+"/"+filepath.Base(p)] = systemdtest.FileSpec{Source: p, Mode: 0o644}
	}
	s := systemdtest.Boot(t, systemdtest.Options{Files: files, CommandTimeout: 3 * time.Minute})
	m := &machine{System: s, t: t}
	// The veth exists before sesamed starts, as a real interface would.
	m.peer = s.PeerNS(t)
	return m
}

func (m *machine) must(argv ...string) string {
	m.t.Helper()
	out, err := m.Run(argv...)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

func (m *machine) fails(what string, argv ...string) {
	m.t.Helper()
	if out, err := m.Run(argv...); err == nil {
		m.t.Errorf("%s: %v succeeded:\n%s", what, argv, out)
	}
}

func (m *machine) show(property string) string {
	m.t.Helper()
	v, err := m.Show(unit, property)
	if err != nil {
		m.t.Fatal(err)
	}
	return v
}

// waitFor polls cond until it holds or timeout passes.
func (m *machine) waitFor(what string, timeout time.Duration, cond func() (bool, string)) bool {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			m.t.Errorf("%s: not after %v (last: %s)", what, timeout, state)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// journal returns sesamed's journal entries matching the field matches.
func (m *machine) journal(matches ...string) string {
	out, _ := m.Journalctl(append([]string{"-o", "cat", "-u", unit}, matches...)...)
	return out
}

// knock knocks from the peer namespace with Debian's knock until the
// door's OPEN SESAME is in the journal. A knock is repeated only if the
// door does not open; for a door already open that extends the grant.
func (m *machine) knock(door string, ports ...string) {
	m.t.Helper()
	opens := func() int {
		return strings.Count(m.journal("SESAME_EVENT=open", "SESAME_DOOR="+door), ": OPEN SESAME")
	}
	before := opens()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m.peer.MustRun(append([]string{"knock", netnstest.ServerAddr4.String()}, ports...)...)
		for i := 0; i < 30; i++ {
			if opens() > before {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	m.t.Fatalf("knocking %v: door %s did not open:\n%s", ports, door, m.journal())
}

type grantJSON struct {
	ID, Door, Source string
}

func (m *machine) grants() []grantJSON {
	m.t.Helper()
	var gs []grantJSON
	if err := json.Unmarshal([]byte(m.must("sesame", "grants", "--json")), &gs); err != nil {
		m.t.Fatal(err)
	}
	return gs
}

func (m *machine) apt(args ...string) string {
	m.t.Helper()
	return m.must(append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "--no-install-recommends"}, args...)...)
}

func (m *machine) pkgStatus() string {
	out, _ := m.Run("dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", "sesame")
	return strings.TrimSpace(out)
}

// sesameFirewallObjects lists what Sesame itself created in the firewall.
func (m *machine) sesameFirewallObjects() []string {
	var objs []string
	if _, err := m.Run("nft", "list", "table", "inet", "sesame"); err == nil {
		objs = append(objs, "nft table inet sesame")
	}
	for _, ipt := range []string{"iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"} {
		for _, chain := range []string{"SESAME", "SESAME-RESCUE"} {
			if _, err := m.Run(ipt, "-w", "-S", chain); err == nil {
				objs = append(objs, ipt+" chain "+chain)
			}
		}
	}
	if out, err := m.Run("ipset", "list", "-n"); err == nil && strings.Contains(out, "sesame") {
		objs = append(objs, "ipsets "+strings.Join(strings.Fields(out), ","))
	}
	return objs
}

// TestDebUnderSystemd installs the .deb under a real systemd in a
// throw-away root, runs it with a config, knocks, reloads, upgrades,
// removes and purges, and checks that the host never saw any of it.
func TestDebUnderSystemd(t *testing.T) {
	netnstest.RequireRoot(t)
	needTools(t, "knock", "dpkg-deb", "apt-get", "iptables", "iptables-legacy", "nft", "nsenter")
	deb1, _ := packages(t, "1.0.0")
	deb2, _ := packages(t, "1.0.1")
	guardHost(t)
	m := bootMachine(t, deb1, deb2)
	if st := m.pkgStatus(); strings.HasPrefix(st, "installed") {
		t.Fatalf("sesame already installed in the fresh root: %s", st)
	}

	t.Log("install 1.0.0: not enabled, not started, a hint printed")
	out := m.apt("install", pkgDir+"/"+filepath.Base(deb1))
	if !strings.Contains(out, "neither enabled nor started") {
		t.Errorf("install printed no hint:\n%s", out)
	}
	if st := m.pkgStatus(); st != "installed 1.0.0-1" {
		t.Fatalf("dpkg status %q", st)
	}
	if st, _ := m.Systemctl("is-enabled", unit); strings.TrimSpace(st) != "disabled" {
		t.Errorf("after install: is-enabled %q, want disabled", st)
	}
	if st, _ := m.Systemctl("is-active", unit); strings.TrimSpace(st) != "inactive" {
		t.Errorf("after install: is-active %q, want inactive", st)
	}
	if got := m.must("stat", "-c", "%n %a %U:%G", "/etc/sesame", confPath, "/var/lib/sesame", "/usr/sbin/sesamed"); got !=
		"/etc/sesame 700 root:root\n/etc/sesame/sesame.conf 600 root:root\n/var/lib/sesame 700 root:root\n/usr/sbin/sesamed 755 root:root\n" {
		t.Errorf("installed modes:\n%s", got)
	}
	// knockd's log, for an unchanged knockd.conf (tmpfiles.d/sesame.conf).
	if got := m.must("stat", "-c", "%n %a %U:%G %s", "/var/log/knockd.log"); got != "/var/log/knockd.log 600 root:root 0\n" {
		t.Errorf("after install: %s", got)
	}
	// Clean: no output at all, with the binaries and man pages in place.
	if out := m.must("systemd-analyze", "verify", "/usr/lib/systemd/system/"+unit); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}

	t.Log("configure, enable --now")
	if err := m.WriteFile(confPath, []byte(testConf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "enable", "--now", unit)
	if err := m.WaitActive(unit, time.Minute); err != nil {
		t.Fatal(err)
	}
	for prop, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "main", "WatchdogUSec": "30s", "Restart": "on-failure",
		"PrivateNetwork": "no", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": "cap_net_admin cap_net_raw cap_bpf", "UnitFileState": "enabled",
	} {
		if got := m.show(prop); got != want {
			t.Errorf("%s = %q, want %q", prop, got, want)
		}
	}
	if st := m.show("StatusText"); st == "" {
		t.Errorf("no STATUS= from sesamed")
	}
	// The unit lets sesamed load its eBPF capture filter (CAP_BPF, bpf()).
	if j := m.journal(); !strings.Contains(j, "capture filter on sesame0: eBPF, exact") {
		t.Errorf("the packaged unit's sesamed does not run the eBPF capture filter:\n%s", j)
	}
	// ExecStartPre made iptables-legacy's lock, so door commands using it
	// serialise (the sandbox's read-only /run could not create it).
	m.must("test", "-f", "/run/xtables.lock")
	pid := m.show("MainPID")
	watchdog0 := m.show("WatchdogTimestampMonotonic")

	t.Log("knock with Debian's knock; grants in the journal and in the firewall")
	m.knock("pkgtest", "7100", "7200", "7300")
	m.knock("native", "7400", "7500", "7600")
	client := netnstest.ClientAddr4.String()
	m.waitFor("journalctl -u sesamed SESAME_EVENT=grant", 10*time.Second, func() (bool, string) {
		got := m.journal("SESAME_EVENT=grant", "SESAME_SOURCE="+client)
		return strings.Contains(got, client+": pkgtest: access granted") && strings.Contains(got, client+": native: access granted"), got
	})
	m.waitFor("start command's effects", 10*time.Second, func() (bool, string) {
		b, err := m.ReadFile("/var/lib/sesame/opened")
		return err == nil && strings.TrimSpace(string(b)) == client, fmt.Sprintf("%q %v", b, err)
	})
	for _, argv := range [][]string{{"iptables", "-w", "-C", "INPUT", "-s", client, "-p", "tcp", "--dport", "2323", "-j", "ACCEPT"},
		{"iptables-legacy", "-w", "-C", "INPUT", "-s", client, "-p", "tcp", "--dport", "2324", "-j", "ACCEPT"},
		{"nft", "list", "table", "inet", "pkgtest"}} {
		m.must(argv...)
	}
	if objs := m.sesameFirewallObjects(); len(objs) == 0 {
		t.Errorf("the native grant left no Sesame firewall objects")
	}
	if gs := m.grants(); len(gs) != 2 {
		t.Errorf("sesame grants: %+v, want pkgtest and native", gs)
	}

	t.Log("edit the config in place: it reloads by itself")
	reloads := strings.Count(m.journal(), "re-reading config file: "+confPath)
	m.must("sed", "-i", editSed, confPath)
	m.waitFor("reload after sed -i", 10*time.Second, func() (bool, string) {
		n := strings.Count(m.journal(), "re-reading config file: "+confPath)
		return n > reloads, fmt.Sprint(n, " reloads")
	})
	t.Log("systemctl reload; the added door works")
	reloads = strings.Count(m.journal(), "re-reading config file: "+confPath)
	m.must("systemctl", "reload", unit)
	m.waitFor("reload on systemctl reload", 10*time.Second, func() (bool, string) {
		n := strings.Count(m.journal(), "re-reading config file: "+confPath)
		return n > reloads, fmt.Sprint(n, " reloads")
	})
	m.knock("edited", "7700", "7800", "7900")
	m.waitFor("the added door's command", 10*time.Second, func() (bool, string) {
		b, err := m.ReadFile("/var/lib/sesame/edited")
		return err == nil && strings.TrimSpace(string(b)) == client, fmt.Sprintf("%q %v", b, err)
	})

	t.Log("the watchdog is fed")
	m.waitFor("a WATCHDOG=1 ping", 40*time.Second, func() (bool, string) {
		w := m.show("WatchdogTimestampMonotonic")
		return w != watchdog0 && w != "0", w
	})
	if got := m.show("MainPID"); got != pid || m.show("NRestarts") != "0" {
		t.Errorf("sesamed was restarted (MainPID %s -> %s, NRestarts %s)", pid, got, m.show("NRestarts"))
	}

	t.Log("a crash: ExecStopPost opens the rescue port, Restart= brings sesamed back, its healthy start closes it")
	events := func(ev string) int { return len(strings.Fields(m.journal("SESAME_EVENT="+ev, "-o", "cat"))) }
	opens, closes := events("rescue-open"), events("rescue-close")
	m.must("systemctl", "kill", "--signal=KILL", unit)
	m.waitFor("SESAME_EVENT=rescue-open from ExecStopPost", 20*time.Second, func() (bool, string) {
		n := events("rescue-open")
		return n > opens, m.journal("-n", "20")
	})
	m.waitFor("sesamed restarted", 30*time.Second, func() (bool, string) {
		p, st := m.show("MainPID"), m.show("ActiveState")
		return p != pid && p != "0" && st == "active", p + " " + st
	})
	m.waitFor("SESAME_EVENT=rescue-close from the restarted sesamed (its healthy start must close the rescue)", 20*time.Second, func() (bool, string) {
		n := events("rescue-close")
		return n > closes, m.journal("-n", "20")
	})
	pid = m.show("MainPID")
	edited := m.must("cat", confPath)

	t.Log("upgrade to 1.0.1: config kept, service restarted, grants kept")
	m.apt("install", pkgDir+"/"+filepath.Base(deb2))
	if st := m.pkgStatus(); st != "installed 1.0.1-1" {
		t.Fatalf("dpkg status %q", st)
	}
	if got := m.must("cat", confPath); got != edited {
		t.Errorf("upgrade changed the edited config:\n%s", got)
	}
	if err := m.WaitActive(unit, time.Minute); err != nil {
		t.Fatal(err)
	}
	newPID := m.show("MainPID")
	if newPID == pid {
		t.Errorf("upgrade did not restart sesamed (MainPID %s)", pid)
	}
	if exe := m.must("readlink", "/proc/"+newPID+"/exe"); strings.TrimSpace(exe) != "/usr/sbin/sesamed" {
		t.Errorf("running binary %q", exe)
	}
	if v := m.must("sesamed", "-V"); v != "sesamed 1.0.1\n" {
		t.Errorf("sesamed -V = %q", v)
	}
	m.waitFor("grants resumed after the restart", 10*time.Second, func() (bool, string) {
		gs := m.grants()
		return len(gs) >= 2, fmt.Sprintf("%+v", gs)
	})

	t.Log("remove: grants revoked, service stopped and disabled, firewall clean, state and config kept")
	m.apt("remove", "sesame")
	if st := m.pkgStatus(); st != "config-files 1.0.1-1" {
		t.Errorf("dpkg status %q, want config-files", st)
	}
	if out, _ := m.Systemctl("list-unit-files", "--no-legend", unit); strings.TrimSpace(out) != "" {
		t.Errorf("unit file still known:\n%s", out)
	}
	if st, _ := m.Systemctl("is-active", unit); strings.TrimSpace(st) == "active" {
		t.Errorf("sesamed still active after remove")
	}
	m.fails("enable link removed", "test", "-e", "/etc/systemd/system/multi-user.target.wants/"+unit)
	m.fails("stop command ran", "test", "-e", "/var/lib/sesame/opened")
	m.fails("iptables grant revoked", "iptables", "-w", "-C", "INPUT", "-s", client, "-p", "tcp", "--dport", "2323", "-j", "ACCEPT")
	m.fails("iptables-legacy grant revoked", "iptables-legacy", "-w", "-C", "INPUT", "-s", client, "-p", "tcp", "--dport", "2324", "-j", "ACCEPT")
	m.fails("nft table of the door removed", "nft", "list", "table", "inet", "pkgtest")
	if objs := m.sesameFirewallObjects(); len(objs) > 0 {
		t.Errorf("after remove, Sesame's firewall objects remain: %v", objs)
	}
	if got := m.must("cat", confPath); got != edited {
		t.Errorf("remove changed the config")
	}
	m.must("test", "-d", "/var/lib/sesame")
	m.fails("binary removed", "test", "-e", "/usr/sbin/sesamed")

	t.Log("purge: config and state gone")
	m.apt("purge", "sesame")
	if st := m.pkgStatus(); strings.HasPrefix(st, "installed") || strings.HasPrefix(st, "config-files") {
		t.Errorf("dpkg status %q after purge", st)
	}
	// The empty /var/log/knockd.log tmpfiles.d made goes too.
	for _, p := range []string{"/var/lib/sesame", "/etc/sesame", "/var/log/sesame", "/usr/lib/systemd/system/" + unit, "/var/log/knockd.log"} {
		m.fails("purged "+p, "test", "-e", p)
	}
	if objs := m.sesameFirewallObjects(); len(objs) > 0 {
		t.Errorf("after purge, Sesame's firewall objects remain: %v", objs)
	}
}

// rpmConf: a door with commands and one with a native grant, and a
// rescue port; through iptables-nft and ipset this time.
const rpmConf = `[options]
	Interface = sesame0
	Firewall = iptables-nft
	Rescue_Ports = 2223/tcp

[cmd]
	sequence = 7100,7200,7300
	seq_timeout = 10
	tcpflags = syn
	start_command = echo %IP% >> /var/lib/sesame/opened
	stop_command = rm /var/lib/sesame/opened
	cmd_timeout = 600

[native]
	sequence = 7400,7500,7600
	seq_timeout = 10
	tcpflags = syn
	Open = 2222/tcp
	Open_Timeout = 600
`

// TestRPMUnderSystemd runs the .rpm's scriptlets for real (rpm passes
// counts where dpkg passes words): install, upgrade and erase with
// Debian's rpm, under a real systemd in a throw-away root.
func TestRPMUnderSystemd(t *testing.T) {
	netnstest.RequireRoot(t)
	needTools(t, "knock", "rpm", "ipset", "iptables", "nsenter")
	_, rpm1 := packages(t, "1.0.0")
	_, rpm2 := packages(t, "1.0.1")
	guardHost(t)
	m := bootMachine(t, rpm1, rpm2)
	// Debian's rpm wants --force-debian to install; the rpm database in
	// the throw-away root knows nothing of dpkg's packages: --nodeps.
	rpm := func(args ...string) string {
		return m.must(append([]string{"rpm", "--force-debian", "--nodeps"}, args...)...)
	}
	query := func() string {
		out, _ := m.Run("rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", "sesame")
		return strings.TrimSpace(out)
	}

	t.Log("rpm -i: not enabled, not started, a hint printed")
	if out := rpm("-i", pkgDir+"/"+filepath.Base(rpm1)); !strings.Contains(out, "neither enabled nor started") {
		t.Errorf("install printed no hint:\n%s", out)
	}
	if q := query(); q != "1.0.0-1" {
		t.Fatalf("rpm -q: %q", q)
	}
	if st, _ := m.Systemctl("is-enabled", unit); strings.TrimSpace(st) != "disabled" {
		t.Errorf("after install: is-enabled %q, want disabled", st)
	}
	if st, _ := m.Systemctl("is-active", unit); strings.TrimSpace(st) != "inactive" {
		t.Errorf("after install: is-active %q, want inactive", st)
	}
	if got := m.must("stat", "-c", "%n %a", "/etc/sesame", confPath, "/var/lib/sesame"); got != "/etc/sesame 700\n/etc/sesame/sesame.conf 600\n/var/lib/sesame 700\n" {
		t.Errorf("installed modes:\n%s", got)
	}

	if err := m.WriteFile(confPath, []byte(rpmConf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.must("systemctl", "enable", "--now", unit)
	if err := m.WaitActive(unit, time.Minute); err != nil {
		t.Fatal(err)
	}
	m.knock("cmd", "7100", "7200", "7300")
	m.knock("native", "7400", "7500", "7600")
	m.waitFor("start command ran", 10*time.Second, func() (bool, string) {
		_, err := m.Run("test", "-f", "/var/lib/sesame/opened")
		return err == nil, fmt.Sprint(err)
	})
	if objs := m.sesameFirewallObjects(); len(objs) == 0 {
		t.Errorf("the native grant left no Sesame firewall objects")
	}
	pid := m.show("MainPID")

	t.Log("rpm -U: restarted, config kept")
	rpm("-U", pkgDir+"/"+filepath.Base(rpm2))
	if q := query(); q != "1.0.1-1" {
		t.Fatalf("rpm -q after upgrade: %q", q)
	}
	if err := m.WaitActive(unit, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := m.show("MainPID"); got == pid {
		t.Errorf("upgrade did not restart sesamed (MainPID %s)", pid)
	}
	if got := m.must("cat", confPath); got != rpmConf {
		t.Errorf("upgrade changed the edited config:\n%s", got)
	}
	if st, _ := m.Systemctl("is-enabled", unit); strings.TrimSpace(st) != "enabled" {
		t.Errorf("after upgrade: is-enabled %q", st)
	}

	t.Log("rpm -e: revoked, stopped, disabled, torn down; state kept, config saved")
	rpm("-e", "sesame")
	if q := query(); strings.HasPrefix(q, "1.") {
		t.Errorf("still installed: %s", q)
	}
	if out, _ := m.Systemctl("list-unit-files", "--no-legend", unit); strings.TrimSpace(out) != "" {
		t.Errorf("unit file still known:\n%s", out)
	}
	m.fails("enable link removed", "test", "-e", "/etc/systemd/system/multi-user.target.wants/"+unit)
	m.fails("stop command ran", "test", "-e", "/var/lib/sesame/opened")
	if objs := m.sesameFirewallObjects(); len(objs) > 0 {
		t.Errorf("after erase, Sesame's firewall objects remain: %v", objs)
	}
	m.must("test", "-d", "/var/lib/sesame")
	if got := m.must("cat", confPath+".rpmsave"); got != rpmConf {
		t.Errorf("sesame.conf.rpmsave:\n%s", got)
	}
	m.fails("binary removed", "test", "-e", "/usr/sbin/sesamed")
}
