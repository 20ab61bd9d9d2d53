package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// The shared notes' base door, plus a barrier door: one UDP knock on
// 65000 opens it, and once its OPEN SESAME is logged every packet sent
// before it has been processed (one socket, one matcher, in order).
const baseConf = `[options]
	Interface = sesame0
[base]
	sequence    = 7000,8000,9000
	seq_timeout = 5
	tcpflags    = syn
	start_command = echo S %IP% >> {{DIR}}/out
[barrier]
	sequence = 65000:udp
`

const client = "10.77.0.2"

// env is one conformance case's world.
type env struct {
	t    *testing.T
	pair *netnstest.Pair
	k    knocker
	d    *proc
	raw  *raw
	// barrierDst is where barrier knocks go (default: the server's
	// first IPv4 address).
	barrierDst netip.Addr
}

func (e *env) knock(args ...string) {
	e.t.Helper()
	e.k.knock(e.t, e.pair.Client, append([]string{netnstest.ServerAddr4.String()}, args...)...)
}

func (e *env) syn(port uint16, flags uint8) {
	e.raw.send(rawsend.Spec{DstPort: port, Proto: knock.TCP, Flags: flags})
}

// barrier waits until the daemon has processed everything sent so far
// and returns the doors opened (barrier excluded), "src door" each.
func (e *env) barrier() []string {
	e.t.Helper()
	before := len(e.d.opens())
	e.raw.send(rawsend.Spec{SrcIP: netip.MustParseAddr("10.77.0.254"), DstIP: e.barrierDst, DstPort: 65000, Proto: knock.UDP})
	if !poll(5*time.Second, func() bool { return len(e.d.opens()) > before && slices.Contains(e.d.opens(), "10.77.0.254 barrier") }) {
		e.t.Fatalf("barrier not seen; output:\n%s", e.d.out.String())
	}
	var out []string
	for _, o := range e.d.opens() {
		if !strings.HasSuffix(o, " barrier") {
			out = append(out, o)
		}
	}
	return out
}

type confCase struct {
	name  string
	extra string // more doors
	// rawOnly cases need packets the clients cannot make; they run once.
	rawOnly bool
	steps   func(e *env)
	want    []string
	check   func(e *env)
}

var conformance = []confCase{
	{name: "in time opens once", steps: func(e *env) { e.knock("7000", "8000", "9000") },
		want: []string{client + " base"},
		check: func(e *env) {
			if !poll(5*time.Second, func() bool { return slices.Equal(e.d.file("out"), []string{"S " + client}) }) {
				e.t.Errorf("command output %q, want the IP substituted once", e.d.file("out"))
			}
		}},
	{name: "third knock after the timeout", steps: func(e *env) {
		e.knock("7000", "8000")
		time.Sleep(5100 * time.Millisecond)
		e.knock("9000")
	}},
	{name: "ports outside every door are invisible", steps: func(e *env) { e.knock("7000", "1234", "5555:udp", "8000", "9000") },
		want: []string{client + " base"}},
	{name: "udp knock on another door's port invalidates at stage 2", extra: "[other]\nsequence = 5555:udp,6666:udp\n",
		steps: func(e *env) { e.knock("7000", "8000", "5555:udp", "9000") }},
	{name: "udp to 8000 with no 8000/udp door is invisible", steps: func(e *env) { e.knock("7000", "8000:udp", "8000", "9000") },
		want: []string{client + " base"}},
	{name: "ack-only mid-sequence is ignored", steps: func(e *env) {
		e.knock("7000")
		e.syn(8000, knock.ACK)
		e.knock("8000", "9000")
	}, want: []string{client + " base"}},
	{name: "tcpflags=syn accepts syn+ack", rawOnly: true, steps: func(e *env) {
		for _, p := range []uint16{7000, 8000, 9000} {
			e.syn(p, knock.SYN|knock.ACK)
		}
	}, want: []string{client + " base"}},
	{name: "tcpflags=syn,!ack ignores syn+ack", rawOnly: true,
		extra: "[strict]\nsequence = 7100,8100,9100\ntcpflags = syn,!ack\n",
		steps: func(e *env) {
			// Ignored, not reset: the plain SYNs still complete it.
			e.syn(7100, knock.SYN)
			e.syn(8100, knock.SYN|knock.ACK)
			e.syn(8100, knock.SYN)
			e.syn(9100, knock.SYN|knock.ACK)
		}},
	{name: "doors sharing a prefix: only the completed one opens",
		extra: "[alt]\nsequence = 7000,8000,9001\ntcpflags = syn\n",
		steps: func(e *env) { e.knock("7000", "8000", "9001") }, want: []string{client + " alt"}},
	{name: "two sources interleaving open independently", rawOnly: true, steps: func(e *env) {
		other := netip.MustParseAddr("10.77.0.3")
		for _, p := range []uint16{7000, 8000, 9000} {
			e.syn(p, knock.SYN)
			e.raw.send(rawsend.Spec{SrcIP: other, DstPort: p, Proto: knock.TCP, Flags: knock.SYN})
		}
	}, want: []string{client + " base", "10.77.0.3 base"}},
	{name: "target: knocks to the target open that door",
		extra: "[tgt]\nsequence = 7200,8200\ntarget = 10.77.0.50\n",
		steps: func(e *env) {
			e.k.knock(e.t, e.pair.Client, "10.77.0.50", "7200", "8200")
		}, want: []string{client + " tgt"}},
	{name: "target: knocks to the interface address do not",
		extra: "[tgt]\nsequence = 7200,8200\ntarget = 10.77.0.50\n",
		steps: func(e *env) { e.knock("7200", "8200") }},
	{name: "ipv6 knock uses the _6 command, else the ipv4 one",
		extra: "[six]\nsequence = 7500,8500\nstart_command = echo v4 %IP% >> {{DIR}}/six\nstart_command_6 = echo v6 %IP% >> {{DIR}}/six\n" +
			"[fallback]\nsequence = 7600,8600\nstart_command = echo v4 %IP% >> {{DIR}}/fallback\n",
		steps: func(e *env) {
			e.k.knock(e.t, e.pair.Client, "-6", netnstest.ServerAddr6.String(), "7500", "8500")
			e.k.knock(e.t, e.pair.Client, "-6", netnstest.ServerAddr6.String(), "7600", "8600")
		},
		want: []string{"fd77::2 six", "fd77::2 fallback"},
		check: func(e *env) {
			if !poll(5*time.Second, func() bool {
				return slices.Equal(e.d.file("six"), []string{"v6 fd77::2"}) && slices.Equal(e.d.file("fallback"), []string{"v4 fd77::2"})
			}) {
				e.t.Errorf("six %q fallback %q", e.d.file("six"), e.d.file("fallback"))
			}
		}},
}

func TestConformance(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, c := range conformance {
		for _, k := range knockers {
			if c.rawOnly && k.name != "knock" {
				continue
			}
			name := c.name + "/" + k.name
			if c.rawOnly {
				name = c.name + "/raw"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				p := netnstest.NewPair(t)
				// Traffic to a Target address must reach the server's link.
				mac := serverMAC(t, p)
				p.Client.MustRun("ip", "neigh", "add", "10.77.0.50", "lladdr", mac, "dev", netnstest.ClientIf)
				e := &env{t: t, pair: p, k: k, raw: newRaw(t, p)}
				e.d = startSesamed(t, p.Server, baseConf+c.extra)
				c.steps(e)
				got := e.barrier()
				if !slices.Equal(got, c.want) {
					t.Errorf("opened %q, want %q", got, c.want)
				}
				if c.check != nil {
					c.check(e)
				}
			})
		}
	}
}

func serverMAC(t *testing.T, p *netnstest.Pair) string {
	out := p.Server.MustRun("cat", "/sys/class/net/"+netnstest.ServerIf+"/address")
	return strings.TrimSpace(out)
}

func TestCmdTimeoutRunsStopAfterStartFinished(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, k := range knockers {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			p := netnstest.NewPair(t)
			d := startSesamed(t, p.Server, baseConf+`[timed]
	sequence = 7300
	start_command = sleep 0.5; date +%s.%N >> {{DIR}}/start
	stop_command = date +%s.%N >> {{DIR}}/stop
	cmd_timeout = 2
`)
			k.knock(t, p.Client, netnstest.ServerAddr4.String(), "7300")
			if !poll(10*time.Second, func() bool { return len(d.file("stop")) == 1 }) {
				t.Fatalf("stop command did not run; output:\n%s", d.out.String())
			}
			start, _ := strconv.ParseFloat(d.file("start")[0], 64)
			stop, _ := strconv.ParseFloat(d.file("stop")[0], 64)
			gap := stop - start
			t.Logf("stop ran %.3f s after the start command finished", gap)
			// cmd_timeout counts from the end of the start command: the
			// daemon sees that end after the command's own clock does, so
			// neither its deadline nor the stop can come earlier than 2 s
			// after it (from the start of the command, it would be 1.5 s).
			if gap < 1.95 {
				t.Errorf("stop ran %.3f s after the start command finished, before cmd_timeout (2 s)", gap)
			}
			// The deadline the daemon journaled and expired on: what it knew
			// of the end, plus 2 s. How late it saw the end, and how late
			// the stop ran after it, depends on the machine's load; counted
			// twice (or from a later moment), it would be 4 s or more.
			m := regexp.MustCompile(`event=expire .*deadline=(\S+)`).FindStringSubmatch(d.out.String())
			if m == nil {
				t.Fatalf("no expire line:\n%s", d.out.String())
			}
			dl, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatal(err)
			}
			deadline := float64(dl.UnixNano()) / 1e9
			if after := deadline - start; after < 1.95 || after >= 4 {
				t.Errorf("expired at a deadline %.3f s after the start command finished, want 2 s plus how late sesamed saw the end\n%s", after, d.out.String())
			}
			if stop < deadline-0.05 {
				t.Errorf("stop ran %.3f s before its deadline", deadline-stop)
			}
		})
	}
}

func TestOneTimeSequences(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, k := range knockers {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			p := netnstest.NewPair(t)
			dir := t.TempDir()
			seqs := filepath.Join(dir, "seqs")
			os.WriteFile(seqs, []byte(" 1111\n 2222\n"), 0o600)
			e := &env{t: t, pair: p, k: k, raw: newRaw(t, p)}
			e.d = startSesamedIn(t, p.Server, dir, baseConf+"[ot]\none_time_sequences = "+seqs+"\nstart_command = echo OT %IP% >> {{DIR}}/ot\n")
			e.knock("1111")
			if got := e.barrier(); !slices.Equal(got, []string{client + " ot"}) {
				t.Fatalf("first use: opened %q", got)
			}
			if b, _ := os.ReadFile(seqs); string(b) != "#1111\n 2222\n" {
				t.Errorf("file after first use %q, want the used line marked", b)
			}
			e.knock("1111")
			e.knock("2222")
			if got := e.barrier(); !slices.Equal(got, []string{client + " ot", client + " ot"}) {
				t.Fatalf("opened %q, want a second open by 2222 only", got)
			}
			e.d.waitLog("no more sequences left in the one time sequences file for door ot --> disabling the door", 5*time.Second)
			// IPv6 keeps working (knockd 0.8 forgot the v6 filter) and the daemon is alive.
			e.k.knock(t, p.Client, "-6", netnstest.ServerAddr6.String(), "7000", "8000", "9000")
			e.barrier()
			if !slices.Contains(e.d.opens(), "fd77::2 base") {
				t.Errorf("IPv6 knock after one-time use did not open: %q", e.d.opens())
			}
		})
	}
}
