package e2e

import (
	"bufio"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// crashConf's door opens on one SYN to 7000 and runs real iptables
// commands in the server namespace; both commands log their address and
// the time they finished.
const crashConf = `[options]
	Interface = sesame0
[crash]
	sequence = 7000
	tcpflags = syn
	start_command = iptables -I INPUT -s %IP% -p tcp --dport 2222 -j ACCEPT && echo "start %IP% $(date +%s.%N)" >> {{DIR}}/cmds
	stop_command = iptables -D INPUT -s %IP% -p tcp --dport 2222 -j ACCEPT; echo "stop %IP% $(date +%s.%N)" >> {{DIR}}/cmds
	cmd_timeout = 2
[barrier]
	sequence = 65000:udp
`

type cmdLog struct {
	starts map[string][]float64
	stops  map[string][]float64
}

func readCmds(t *testing.T, path string) cmdLog {
	l := cmdLog{starts: map[string][]float64{}, stops: map[string][]float64{}}
	f, err := os.Open(path)
	if err != nil {
		return l
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			t.Errorf("bad command log line %q", sc.Text())
			continue
		}
		ts, _ := strconv.ParseFloat(fs[2], 64)
		if fs[0] == "start" {
			l.starts[fs[1]] = append(l.starts[fs[1]], ts)
		} else {
			l.stops[fs[1]] = append(l.stops[fs[1]], ts)
		}
	}
	return l
}

// filterRules is the server namespace's filter table without counters.
func filterRules(t *testing.T, ns *netnstest.NS) string {
	out := ns.MustRun("iptables-save", "-t", "filter")
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasPrefix(l, ":") {
			l = regexp.MustCompile(` \[\d+:\d+\]$`).ReplaceAllString(l, "")
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

var revokedRE = regexp.MustCompile(`(\S+): crash: access revoked: .*deadline=(\S+)`)

// deadlines maps each source to the deadline its revocation was logged with.
func deadlines(outputs []string) map[string]time.Time {
	m := map[string]time.Time{}
	for _, o := range outputs {
		for _, mm := range revokedRE.FindAllStringSubmatch(o, -1) {
			src := mm[1][strings.LastIndex(mm[1], " ")+1:]
			if dl, err := time.Parse(time.RFC3339Nano, mm[2]); err == nil {
				m[src] = dl
			}
		}
	}
	return m
}

func unix(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }

// SIGKILL the daemon at random moments across at least 50 grants, before,
// during and after their start commands, restarting it each time.
func TestKillAtRandomMomentsNeverLeaksOrRepeats(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	baseline := filterRules(t, p.Server)
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	var outputs []string
	sent := 0
	for round := 0; sent < 60; round++ {
		d := startSesamedIn(t, p.Server, dir, crashConf)
		for n := 1 + rng.Intn(5); n > 0; n-- {
			sent++
			src := netip.AddrFrom4([4]byte{10, 77, 1, byte(sent)})
			r.send(rawsend.Spec{SrcIP: src, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
			time.Sleep(time.Duration(rng.Intn(30)) * time.Millisecond)
		}
		// Kill while commands may be starting, running or stopping.
		time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
		d.kill()
		outputs = append(outputs, d.out.String())
		// A short outage: a deadline passing now is met at the restart.
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
	}
	d := startSesamedIn(t, p.Server, dir, crashConf)
	// Every grant's deadline is at most 2 s plus a command away.
	time.Sleep(3500 * time.Millisecond)
	d.stop()
	outputs = append(outputs, d.out.String())

	cmds := readCmds(t, filepath.Join(dir, "cmds"))
	dls := deadlines(outputs)
	if len(cmds.starts) < 50 {
		t.Fatalf("only %d grants started (of %d knocks); want at least 50", len(cmds.starts), sent)
	}
	for src, st := range cmds.starts {
		stops := cmds.stops[src]
		if len(st) != 1 {
			t.Errorf("%s: start ran %d times", src, len(st))
		}
		if len(stops) != 1 {
			t.Errorf("%s: stop ran %d times, want exactly once", src, len(stops))
			continue
		}
		dl, ok := dls[src]
		if !ok {
			t.Errorf("%s: no revocation logged", src)
			continue
		}
		stop := unix(stops[0])
		if stop.Before(dl.Add(-20 * time.Millisecond)) {
			t.Errorf("%s: stopped %v before its deadline", src, dl.Sub(stop))
		}
		if stop.After(dl.Add(time.Second)) {
			t.Errorf("%s: stopped %v after its deadline, want within 1 s", src, stop.Sub(dl))
		}
		if start := unix(st[0]); dl.Before(start.Add(2*time.Second - 100*time.Millisecond)) {
			t.Errorf("%s: deadline %v is less than cmd_timeout after the start finished", src, dl.Sub(start))
		}
	}
	if got := filterRules(t, p.Server); got != baseline {
		t.Errorf("filter table changed:\nbefore:\n%s\nafter:\n%s", baseline, got)
	}
	t.Logf("%d grants over %d knocks; every rule removed within its deadline + 1 s, each stop ran once", len(cmds.starts), sent)
}

func TestRestartWithOverdueGrants(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	dir := t.TempDir()
	d := startSesamedIn(t, p.Server, dir, crashConf)
	for i := 1; i <= 3; i++ {
		r.send(rawsend.Spec{SrcIP: netip.AddrFrom4([4]byte{10, 77, 2, byte(i)}), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	}
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 3 }) {
		t.Fatal("grants did not start")
	}
	d.kill()
	time.Sleep(3 * time.Second) // past every deadline with no daemon
	if n := len(readCmds(t, filepath.Join(dir, "cmds")).stops); n != 0 {
		t.Fatalf("%d stops ran with no daemon", n)
	}
	restart := time.Now()
	d = startSesamedIn(t, p.Server, dir, crashConf)
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).stops) == 3 }) {
		t.Fatalf("overdue grants not revoked; output:\n%s", d.out.String())
	}
	for src, st := range readCmds(t, filepath.Join(dir, "cmds")).stops {
		if el := unix(st[0]).Sub(restart); el > time.Second {
			t.Errorf("%s revoked %v after the restart", src, el)
		}
	}
	if strings.Contains(p.Server.MustRun("iptables", "-S", "INPUT"), "2222") {
		t.Error("rules left")
	}
}

func TestTruncatedJournalTail(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	dir := t.TempDir()
	conf := strings.Replace(crashConf, "cmd_timeout = 2", "cmd_timeout = 4", 1)
	d := startSesamedIn(t, p.Server, dir, conf)
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.3.1"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 1 }) {
		t.Fatal("grant did not start")
	}
	d.kill()
	// A crash in the middle of writing the next record: half a frame.
	log := filepath.Join(dir, "state", "grants.log")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(data[:len(data)/2])
	f.Close()

	d = startSesamedIn(t, p.Server, dir, conf)
	d.waitLog("resuming grant", 5*time.Second)
	if !strings.Contains(strings.ToLower(d.out.String()), "torn") && !strings.Contains(strings.ToLower(d.out.String()), "corrupt") {
		t.Errorf("the damaged tail was not reported:\n%s", d.out.String())
	}
	// New grants append after the cut and survive another restart.
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.3.2"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 2 }) {
		t.Fatal("new grant did not start")
	}
	d.kill()
	d = startSesamedIn(t, p.Server, dir, conf)
	if !poll(10*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).stops) == 2 }) {
		t.Fatalf("grants not revoked after restarts; output:\n%s", d.out.String())
	}
}

// With the state dir's disk full, new grants are refused with a clear
// error and the daemon keeps serving (and revoking) the grants it has.
func TestFullStateDisk(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	conf := strings.Replace(crashConf, "cmd_timeout = 2", "cmd_timeout = 3", 1)
	// The tiny disk is mounted in a mount namespace of the daemon's own,
	// so the host's mount table never changes (other tests watch it).
	wrap := []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=64k,mode=0700 tmpfs "$0" && exec "$@"`, state}
	d := startSesamedWrapped(t, p.Server, dir, conf, wrap)
	inDaemonNS := func(argv ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(d.cmd.Process.Pid), "-m"}, argv...)...)
	}
	if out, err := inDaemonNS("findmnt", "-n", "-o", "FSTYPE", state).Output(); err != nil || strings.TrimSpace(string(out)) != "tmpfs" {
		t.Fatalf("state dir is not the daemon's tmpfs: %q %v", out, err)
	}
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.4.1"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 1 }) {
		t.Fatal("grant did not start")
	}
	// Fill the disk, then knock until the journal has no room left (its
	// last page may still hold a few records).
	inDaemonNS("dd", "if=/dev/zero", "of="+filepath.Join(state, "fill"), "bs=4k").Run()
	var refused string
	for i := 10; i < 60 && refused == ""; i++ {
		src := fmt.Sprintf("10.77.4.%d", i)
		r.send(rawsend.Spec{SrcIP: netip.MustParseAddr(src), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
		poll(2*time.Second, func() bool {
			return strings.Contains(d.out.String(), src+": crash: grant refused") || len(readCmds(t, filepath.Join(dir, "cmds")).starts[src]) == 1
		})
		if strings.Contains(d.out.String(), src+": crash: grant refused") {
			refused = src
		}
	}
	if refused == "" {
		t.Fatalf("no grant refused on a full disk; output:\n%s", d.out.String())
	}
	d.waitLog("no space left on device", time.Second)
	if cmds := readCmds(t, filepath.Join(dir, "cmds")); len(cmds.starts[refused]) != 0 {
		t.Error("a grant was applied without a journal record")
	}
	// The existing grants are still revoked on time.
	if !poll(8*time.Second, func() bool {
		c := readCmds(t, filepath.Join(dir, "cmds"))
		return len(c.stops) == len(c.starts)
	}) {
		t.Fatalf("existing grants not revoked with a full disk; output:\n%s", d.out.String())
	}
	// Space back: grants work again without a restart.
	if out, err := inDaemonNS("rm", filepath.Join(state, "fill")).CombinedOutput(); err != nil {
		t.Fatalf("rm fill: %v %s", err, out)
	}
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.4.3"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if !poll(5*time.Second, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts["10.77.4.3"]) == 1 }) {
		t.Fatalf("no grant after space came back; output:\n%s", d.out.String())
	}
}
