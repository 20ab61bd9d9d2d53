package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// Sesame's deliberate differences from knockd, each shown on the wire.
// Where knockd's behaviour is the point, it runs side by side on the
// same packets.

func newEnv(t *testing.T, conf string) *env {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
	e.d = startSesamed(t, p.Server, conf)
	return e
}

// A SYN retransmit of the previous stage: knockd resets, Sesame ignores it.
func TestRepeatOfPreviousStageIsIgnored(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	for _, daemon := range []string{"sesamed", "knockd"} {
		t.Run(daemon, func(t *testing.T) {
			p := netnstest.NewPair(t)
			e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
			if daemon == "sesamed" {
				e.d = startSesamed(t, p.Server, baseConf)
			} else {
				e.d = startKnockd(t, p.Server, strings.Replace(baseConf, "Interface = sesame0", "", 1))
			}
			e.knock("7000", "7000", "8000", "8000", "9000")
			got := e.barrier()
			want := []string{client + " base"}
			if daemon == "knockd" {
				want = nil // the reference: knockd 0.8 resets on the repeat
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s opened %q, want %q", daemon, got, want)
			}
		})
	}
}

func TestSubSecondTimeoutExpiresEagerly(t *testing.T) {
	e := newEnv(t, baseConf+"[fast]\nsequence = 7700,8700\nseq_timeout = 0.3\n")
	start := time.Now()
	e.knock("7700")
	// No further packet: the timeout is noticed by the daemon's timer.
	e.d.waitLog(client+": fast: sequence timeout (stage 1)", 3*time.Second)
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("timed out after %v, before seq_timeout", el)
	}
	e.knock("8700")
	if got := e.barrier(); len(got) != 0 {
		t.Errorf("opened %q after the timeout", got)
	}
}

func TestRepeatKnockExtendsTheGrant(t *testing.T) {
	e := newEnv(t, baseConf+`[grant]
	sequence = 7800,8800
	start_command = echo start %IP% >> {{DIR}}/grant
	stop_command = echo stop %IP% >> {{DIR}}/grant
	cmd_timeout = 2
`)
	e.knock("7800", "8800")
	if !poll(5*time.Second, func() bool { return len(e.d.file("grant")) == 1 }) {
		t.Fatal("start did not run")
	}
	time.Sleep(time.Second)
	e.knock("7800", "8800")
	e.d.waitLog("grant extended until", 5*time.Second)
	if !poll(10*time.Second, func() bool { return len(e.d.file("grant")) == 2 }) {
		t.Fatalf("stop did not run; output:\n%s", e.d.out.String())
	}
	if got := e.d.file("grant"); !slices.Equal(got, []string{"start " + client, "stop " + client}) {
		t.Errorf("commands %q, want one start and one stop", got)
	}
}

func TestSpoofedFloodDoesNotStopARealKnocker(t *testing.T) {
	e := newEnv(t, strings.Replace(baseConf, "[options]", "[options]\n\tMaxAttempts = 200", 1))
	e.knock("7000", "8000")
	// 20,000 spoofed first knocks through a table of 200.
	for i := 0; i < 20000; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		e.raw.send(rawsend.Spec{SrcIP: src, DstPort: 7000, Proto: knock.TCP, Flags: knock.SYN})
	}
	e.knock("9000")
	got := e.barrier()
	if !slices.Contains(got, client+" base") {
		t.Errorf("the real knocker did not get in under the flood")
	}
	e.d.waitLog("attempt table full (MaxAttempts 200)", 5*time.Second)
}

func TestCommandsCannotForkStorm(t *testing.T) {
	e := newEnv(t, baseConf+"[ping]\nsequence = 7900:udp\nstart_command = echo x >> {{DIR}}/storm\n")
	start := time.Now()
	for i := 0; i < 1000; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		e.raw.send(rawsend.Spec{SrcIP: src, DstPort: 7900, Proto: knock.UDP})
	}
	e.barrier()
	el := time.Since(start)
	time.Sleep(500 * time.Millisecond) // let the allowed commands finish writing
	n := len(e.d.file("storm"))
	// Burst 20 plus 10 per second.
	if limit := 20 + int(el.Seconds()*10) + 2; n > limit || n < 20 {
		t.Errorf("%d commands ran for 1000 opens in %v; want 20..%d", n, el, limit)
	}
	e.d.waitLog("grant refused: rate limit reached", time.Second)
}

func TestVLANTaggedAndSpoofedKnocks(t *testing.T) {
	e := newEnv(t, baseConf)
	for _, p := range []uint16{7000, 8000, 9000} {
		e.raw.send(rawsend.Spec{VLANs: []uint16{100}, DstPort: p, Proto: knock.TCP, Flags: knock.SYN})
	}
	spoof := netip.MustParseAddr("192.0.2.77")
	for _, p := range []uint16{7000, 8000, 9000} {
		e.raw.send(rawsend.Spec{SrcIP: spoof, DstPort: p, Proto: knock.TCP, Flags: knock.SYN})
	}
	if got := e.barrier(); !slices.Equal(got, []string{client + " base", "192.0.2.77 base"}) {
		t.Errorf("opened %q", got)
	}
}

func TestInvalidConfigIsRejectedWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.conf")
	os.WriteFile(path, []byte("[door]\nsequence = 7000,abc\nseq_timeout = soon\n"), 0o600)
	for _, argv := range [][]string{{bin("sesamed"), "--check", "-c", path}, {bin("sesame"), "check", path}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: exit %v, want 1", argv, err)
		}
		for _, want := range []string{path + ":2: Sequence: bad port \"abc\"", path + ":3: Seq_Timeout"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", argv, want, out)
			}
		}
	}
	os.WriteFile(path, []byte(baseConf), 0o600)
	if out, err := exec.Command(bin("sesamed"), "--check", "-c", path).CombinedOutput(); err != nil {
		t.Errorf("valid config: %v\n%s", err, out)
	}
}

func TestReloadWithInvalidConfigKeepsRunning(t *testing.T) {
	e := newEnv(t, baseConf)
	path := filepath.Join(e.d.dir, "sesame.conf")
	os.WriteFile(path, []byte("[base]\nsequence = 0\n"), 0o600)
	e.d.cmd.Process.Signal(sigHUP)
	e.d.waitLog("config not reloaded, keeping the running one", 5*time.Second)
	e.d.waitLog(path+":2:", time.Second)
	e.knock("7000", "8000", "9000")
	if got := e.barrier(); !slices.Equal(got, []string{client + " base"}) {
		t.Errorf("after a bad reload opened %q", got)
	}
}

// knockd opens a door for sesame knock: the client is interoperable.
func TestKnockdAcceptsSesameKnock(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	p := netnstest.NewPair(t)
	d := startKnockd(t, p.Server, `[options]
	LogFile = {{DIR}}/knockd.log
[mixed]
	sequence = 7000,8000:udp,9000
	seq_timeout = 5
	start_command = echo OPENED %IP% >> {{DIR}}/out
`)
	k := knocker{name: "sesame-knock"}
	k.knock(t, p.Client, netnstest.ServerAddr4.String(), "7000", "8000:udp", "9000")
	if !poll(5*time.Second, func() bool { return slices.Equal(d.file("out"), []string{"OPENED " + client}) }) {
		t.Fatalf("knockd did not open for sesame knock: out %q\n%s", d.file("out"), d.out.String())
	}
	if !strings.Contains(strings.Join(d.file("knockd.log"), "\n"), client+": mixed: OPEN SESAME") {
		t.Errorf("knockd log: %q", d.file("knockd.log"))
	}
}

// LogFile lines keep knockd's format, so existing log parsers work.
func TestLogFileFormatMatchesKnockd(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	// Relative paths (each daemon runs in its own directory), so the
	// command lines are identical.
	conf := strings.Replace(baseConf, "[options]", "[options]\n\tLogFile = knock.log", 1)
	conf = strings.ReplaceAll(conf, "{{DIR}}/", "")
	var lines [2][]string
	for i, daemon := range []string{"sesamed", "knockd"} {
		p := netnstest.NewPair(t)
		e := &env{t: t, pair: p, k: knockers[0], raw: newRaw(t, p)}
		if daemon == "sesamed" {
			e.d = startSesamed(t, p.Server, conf)
		} else {
			e.d = startKnockd(t, p.Server, strings.Replace(conf, "Interface = sesame0", "", 1))
		}
		e.knock("7000", "8000", "9000")
		e.barrier()
		if !poll(5*time.Second, func() bool { return len(e.d.file("out")) == 1 }) {
			t.Fatalf("%s: start command did not run", daemon)
		}
		for _, l := range e.d.file("knock.log") {
			if strings.Contains(l, client+": base:") || strings.Contains(l, "base: running command") {
				// Drop the timestamp: "[2026-11-27 21:40] ".
				lines[i] = append(lines[i], l[strings.Index(l, "] ")+2:])
				if !timestampRE.MatchString(l) {
					t.Errorf("%s: line %q lacks knockd's [YYYY-MM-DD HH:MM] stamp", daemon, l)
				}
			}
		}
	}
	if !slices.Equal(lines[0], lines[1]) {
		t.Errorf("log lines differ:\nsesamed: %q\nknockd:  %q", lines[0], lines[1])
	}
}
