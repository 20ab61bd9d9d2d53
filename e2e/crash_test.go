package e2e

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// crashConf's door opens on one SYN to 7000 and runs real iptables
// commands in the server namespace; both commands log their address and
// the time they finished, and the stop also when it began (what the
// daemon controls; iptables itself can take a second on a loaded
// machine).
const crashConf = `[options]
	Interface = sesame0
[crash]
	sequence = 7000
	tcpflags = syn
	start_command = iptables -I INPUT -s %IP% -p tcp --dport 2222 -j ACCEPT && echo "start %IP% $(date +%s.%N)" >> {{DIR}}/cmds
	stop_command = echo "stopping %IP% $(date +%s.%N)" >> {{DIR}}/cmds; iptables -D INPUT -s %IP% -p tcp --dport 2222 -j ACCEPT; echo "stop %IP% $(date +%s.%N)" >> {{DIR}}/cmds
	cmd_timeout = 2
[barrier]
	sequence = 65000:udp
`

type cmdLog struct {
	began    map[string][]float64 // start commands' beginnings, where they log them
	starts   map[string][]float64 // start commands' ends
	stopping map[string][]float64 // stop commands' beginnings
	stops    map[string][]float64 // stop commands' ends
}

func readCmds(t *testing.T, path string) cmdLog {
	l := cmdLog{began: map[string][]float64{}, starts: map[string][]float64{}, stopping: map[string][]float64{}, stops: map[string][]float64{}}
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
		switch fs[0] {
		case "began":
			l.began[fs[1]] = append(l.began[fs[1]], ts)
		case "start":
			l.starts[fs[1]] = append(l.starts[fs[1]], ts)
		case "stopping":
			l.stopping[fs[1]] = append(l.stopping[fs[1]], ts)
		default:
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

func unix(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }

// Tolerances of the crash tests. File times (which date a start that
// finished while no daemon ran) come from the kernel's coarse clock, a
// tick behind the start command's own date; lateness, from a deadline
// (or from when a daemon resumed the grant) to when its stop command
// began, in one daemon's life, covers a journal fsync, a timer and the
// fork of the stop command on a loaded machine.
//
// eventually bounds waits for what must happen but whose timing is not
// what a test measures: a start command's iptables on a loaded machine
// can take seconds, and waiting longer costs nothing when it is quick.
const (
	fileTimeSlack = 50 * time.Millisecond
	lateSlack     = 3 * time.Second
	eventually    = 30 * time.Second
)

// SIGKILL the daemon at random moments across at least 50 grants, before,
// during and after their start commands, restarting it each time.
// Deadlines are what the daemons journaled; lateness is measured in each
// daemon's life, from the deadline or from when it resumed the grants a
// predecessor left (its start-up before that is the machine's, not the
// grants').
func TestKillAtRandomMomentsNeverLeaksOrRepeats(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	baseline := filterRules(t, p.Server)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rng := testRand(t)

	// Rounds go on until 60 grants have run their start command: on a
	// loaded machine a kill often comes before a knock's grant is
	// journaled or started, which is fine but tests nothing.
	var ran runs
	sent := 0
	for round := 0; sent < 240 && len(readCmds(t, filepath.Join(dir, "cmds")).starts) < 60; round++ {
		from := time.Now()
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
		ran.add(d.resumed(from), time.Now())
		// A short outage: a deadline passing now is met at the restart.
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
	}
	from := time.Now()
	d := startSesamedIn(t, p.Server, dir, crashConf)
	// Every grant ends: its deadline is at most 2 s plus a start command
	// away, or a killed start's 2 minutes at the very worst.
	if !poll(3*time.Minute, func() bool {
		pend, err := journal.ReadPending(state)
		return err == nil && len(pend) == 0
	}) {
		t.Errorf("grants still pending in the journal; output:\n%s", d.out.String())
	}
	d.stop()
	ran.add(d.resumed(from), time.Now())

	cmds := readCmds(t, filepath.Join(dir, "cmds"))
	hist := grantHistory(t, state)
	if len(cmds.starts) < 50 {
		t.Errorf("only %d grants started (of %d knocks); want at least 50", len(cmds.starts), sent)
	}
	worst, worstSrc := time.Duration(0), ""
	for src, st := range cmds.starts {
		stops := cmds.stops[src]
		if len(st) != 1 {
			t.Errorf("%s: start ran %d times", src, len(st))
		}
		if len(stops) != 1 || len(cmds.stopping[src]) != 1 {
			t.Errorf("%s: stop ran %d times (began %d times), want exactly once", src, len(stops), len(cmds.stopping[src]))
			continue
		}
		hs := hist[src]
		if len(hs) != 1 {
			t.Errorf("%s: %d grants journaled, want 1", src, len(hs))
			continue
		}
		h := hs[0]
		if !h.revoked || h.forgot {
			t.Errorf("%s: grant %s not journaled as revoked", src, h.id)
		}
		stop, start := unix(cmds.stopping[src][0]), unix(st[0])
		if stop.Before(h.deadline.Add(-fileTimeSlack)) {
			t.Errorf("%s: stopped %v before its journaled deadline", src, h.deadline.Sub(stop))
		}
		if late := ran.lateness(h.deadline, stop); late > lateSlack {
			t.Errorf("%s: a daemon ran %v past the deadline before the stop began (%v in all), want within %v", src, late, stop.Sub(h.deadline), lateSlack)
		} else {
			if late > worst {
				worstSrc = src
			}
			worst = max(worst, late)
		}
		if h.deadline.Before(start.Add(2*time.Second - fileTimeSlack)) {
			t.Errorf("%s: deadline %v is less than cmd_timeout after the start finished (start finish journaled: %v)", src, h.deadline.Sub(start), h.started)
		}
	}
	if got := filterRules(t, p.Server); got != baseline {
		t.Errorf("filter table changed:\nbefore:\n%s\nafter:\n%s", baseline, got)
	}
	t.Logf("%d grants over %d knocks; each stop ran once, none before its journaled deadline, the latest (%s) began %v into a daemon's life after it",
		len(cmds.starts), sent, worstSrc, worst)
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
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 3 }) {
		t.Fatal("grants did not start")
	}
	d.kill()
	time.Sleep(3 * time.Second) // past every deadline with no daemon
	if n := len(readCmds(t, filepath.Join(dir, "cmds")).stops); n != 0 {
		t.Fatalf("%d stops ran with no daemon", n)
	}
	restart := time.Now()
	d = startSesamedIn(t, p.Server, dir, crashConf)
	restart = d.resumed(restart)
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).stops) == 3 }) {
		t.Fatalf("overdue grants not revoked; output:\n%s", d.out.String())
	}
	for src, st := range readCmds(t, filepath.Join(dir, "cmds")).stopping {
		if el := unix(st[0]).Sub(restart); el > lateSlack {
			t.Errorf("%s: stop began %v after the daemon resumed it, want within %v", src, el, lateSlack)
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
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 1 }) {
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
	d.waitLog("resuming grant", eventually)
	if !strings.Contains(strings.ToLower(d.out.String()), "torn") && !strings.Contains(strings.ToLower(d.out.String()), "corrupt") {
		t.Errorf("the damaged tail was not reported:\n%s", d.out.String())
	}
	// New grants append after the cut and survive another restart.
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.3.2"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 2 }) {
		t.Fatal("new grant did not start")
	}
	d.kill()
	d = startSesamedIn(t, p.Server, dir, conf)
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).stops) == 2 }) {
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
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts) == 1 }) {
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
	d.waitLog("no space left on device", eventually)
	if cmds := readCmds(t, filepath.Join(dir, "cmds")); len(cmds.starts[refused]) != 0 {
		t.Error("a grant was applied without a journal record")
	}
	// The existing grants are still revoked on time.
	if !poll(eventually, func() bool {
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
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).starts["10.77.4.3"]) == 1 }) {
		t.Fatalf("no grant after space came back; output:\n%s", d.out.String())
	}
	// The revocations the full disk refused were kept in memory and are
	// journaled now: a restart would not run those stops again.
	c := readCmds(t, filepath.Join(dir, "cmds"))
	var pending []journal.Record
	if !poll(eventually, func() bool {
		copyDir := t.TempDir()
		out, err := inDaemonNS("cat", filepath.Join(state, journal.LogName)).Output()
		if err != nil {
			return false
		}
		os.WriteFile(filepath.Join(copyDir, journal.LogName), out, 0o600)
		pending, err = journal.ReadPending(copyDir)
		if err != nil {
			return false
		}
		for _, p := range pending {
			if len(c.stops[p.Source.String()]) > 0 {
				return false
			}
		}
		return true
	}) {
		var srcs []string
		for _, p := range pending {
			srcs = append(srcs, p.Source.String())
		}
		t.Errorf("grants whose stop ran are still pending in the journal: %v; output:\n%s", srcs, d.out.String())
	}
}

// Journals written while the wall clock was an hour ahead (then stepped
// back): the resumed grants close within their door's timeout, not an
// hour later, and the cut is logged.
func TestResumedDeadlinesFromAClockAheadAreCut(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	j, err := journal.Open(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(time.Hour)
	stop := expand(`echo "stopping %s $(date +%%s.%%N)" >> {{DIR}}/cmds; echo "stop %s $(date +%%s.%%N)" >> {{DIR}}/cmds`, dir)
	for i, timeout := range []time.Duration{2 * time.Second, 0} { // 0: a record without its timeout: the door's
		src := netip.AddrFrom4([4]byte{10, 77, 5, byte(i + 1)})
		r := journal.Record{ID: fmt.Sprintf("ahead%d", i), Door: "crash", Source: src, StopCmd: fmt.Sprintf(stop, src, src),
			Start: ahead, Deadline: ahead.Add(2 * time.Second), Timeout: timeout}
		if err := j.Grant(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	started := time.Now()
	d := startSesamedIn(t, p.Server, dir, crashConf)
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).stopping) == 2 }) {
		t.Fatalf("resumed grants from a clock an hour ahead not revoked; output:\n%s", d.out.String())
	}
	for src, at := range readCmds(t, filepath.Join(dir, "cmds")).stopping {
		if el := unix(at[0]).Sub(started); el < 2*time.Second-fileTimeSlack {
			t.Errorf("%s: stopped %v after the start, before its 2 s timeout", src, el)
		}
	}
	if n := strings.Count(d.out.String(), "the clock was stepped"); n != 2 {
		t.Errorf("%d clamps logged, want 2; output:\n%s", n, d.out.String())
	}
}

// A start command still running when the daemon is killed is waited for
// by the next daemon: its stop runs cmd_timeout after it finished, and
// the rule it added is removed (it used to be left behind: the stop ran at
// the journaled deadline, before the orphaned start added its rule).
func TestOrphanedStartIsWaitedFor(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	r := newRaw(t, p)
	baseline := filterRules(t, p.Server)
	dir := t.TempDir()
	conf := strings.Replace(crashConf, "start_command = ", `start_command = echo "began %IP% $(date +%s.%N)" >> {{DIR}}/cmds; sleep 3; `, 1)
	d := startSesamedIn(t, p.Server, dir, conf)
	r.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.6.1"), DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	// Killed once the start command is running (not merely logged as
	// about to run: a kill before the fork leaves nothing running).
	if !poll(eventually, func() bool { return len(readCmds(t, filepath.Join(dir, "cmds")).began) == 1 }) {
		t.Fatalf("start command did not begin; output:\n%s", d.out.String())
	}
	d.kill()
	d = startSesamedIn(t, p.Server, dir, conf)
	d.waitLog("start command still running after the restart", eventually)
	var c cmdLog
	if !poll(eventually, func() bool {
		c = readCmds(t, filepath.Join(dir, "cmds"))
		return len(c.stops) == 1 && len(c.starts) == 1
	}) {
		t.Fatalf("start and stop did not both run; output:\n%s", d.out.String())
	}
	start, stop := unix(c.starts["10.77.6.1"][0]), unix(c.stopping["10.77.6.1"][0])
	if stop.Before(start.Add(2*time.Second - fileTimeSlack)) {
		t.Errorf("stop began %v after the orphaned start finished, want cmd_timeout (2 s)", stop.Sub(start))
	}
	var h []*history
	if !poll(eventually, func() bool {
		h = grantHistory(t, filepath.Join(dir, "state"))["10.77.6.1"]
		return len(h) == 1 && h[0].revoked
	}) || !h[0].started {
		t.Errorf("journal: %d grants, revoked or start's end not journaled; output:\n%s", len(h), d.out.String())
	}
	if got := filterRules(t, p.Server); got != baseline {
		t.Errorf("filter table changed:\nbefore:\n%s\nafter:\n%s", baseline, got)
	}
}
