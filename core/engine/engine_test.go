package engine

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

type opened struct {
	door string
	src  netip.Addr
}

type fakeGrants struct {
	mu      sync.Mutex
	got     []opened
	outcome grant.Outcome // what Open returns; the zero value means Granted
}

func (f *fakeGrants) Open(d *config.Door, src netip.Addr, now time.Time) grant.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, opened{d.Name, src})
	if f.outcome == grant.Ignored {
		return grant.Granted
	}
	return f.outcome
}

func (f *fakeGrants) set(o grant.Outcome) {
	f.mu.Lock()
	f.outcome = o
	f.mu.Unlock()
}

func (f *fakeGrants) opens() []opened {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]opened(nil), f.got...)
}

var (
	local = netip.MustParseAddr("10.0.0.1")
	src   = netip.MustParseAddr("192.0.2.5")
)

type filterCall struct {
	ports   string
	targets []netip.Addr
}

func start(t *testing.T, conf string, tweak ...func(*Options)) (*Engine, *fakeGrants, *syncbuf.Buffer, chan filterCall) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sesame.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGrants{}
	var buf syncbuf.Buffer
	filters := make(chan filterCall, 16)
	opts := Options{Grants: g, Logger: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug}),
		OnFilter: func(p []knock.Port, tg []netip.Addr) {
			select {
			case filters <- filterCall{knock.FormatSequence(p), tg}:
			default:
			}
		}}
	for _, f := range tweak {
		f(&opts)
	}
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, nil, 0); close(done) }()
	t.Cleanup(func() { cancel(); <-done; e.Close() })
	if err := e.SetLocal(ctx, []netip.Addr{local}); err != nil {
		t.Fatal(err)
	}
	return e, g, &buf, filters
}

func knockAt(e *Engine, ports ...uint16) {
	for _, p := range ports {
		e.Submit(knock.Packet{Src: src, Dst: local, Port: p, Proto: knock.TCP, Flags: knock.SYN})
	}
}

// settled waits (in a synctest bubble) until the engine has handled
// everything it was given, then checks cond.
func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("not so once the engine settled: %s", what)
	}
}

func TestOpensAndLogsInKnockdWords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, g, buf, filters := start(t, "[ssh]\nsequence=7000,8000,9000\ntcpflags=syn\nstart_command=true\n")
		if f := <-filters; f.ports != "7000:tcp,8000:tcp,9000:tcp" {
			t.Errorf("initial filter %+v", f)
		}
		knockAt(e, 7000, 8000, 9000)
		settled(t, "open", func() bool { return len(g.opens()) == 1 })
		for _, want := range []string{"192.0.2.5: ssh: Stage 1", "192.0.2.5: ssh: Stage 3", "192.0.2.5: ssh: OPEN SESAME", "event=open"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, buf.String())
			}
		}
	})
}

func TestTimeoutIsLoggedWithoutAnotherPacket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _, buf, _ := start(t, "[ssh]\nsequence=7000,8000\nseq_timeout=0.2\n")
		knockAt(e, 7000)
		// knockd notices a timeout only when the next packet arrives; here
		// the engine's timer reports it on its own, when it is due.
		const line = "192.0.2.5: ssh: sequence timeout (stage 1)"
		time.Sleep(199 * time.Millisecond)
		settled(t, "no timeout before seq_timeout", func() bool { return !strings.Contains(buf.String(), line) })
		time.Sleep(time.Millisecond)
		settled(t, "timeout log at seq_timeout", func() bool { return strings.Contains(buf.String(), line) })
	})
}

func TestOneTimeSequencesAdvanceAndDisable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		seqs := filepath.Join(dir, "seqs")
		os.WriteFile(seqs, []byte(" 1111\n 2222\n"), 0o600)
		e, g, buf, filters := start(t, "[ot]\none_time_sequences="+seqs+"\nstart_command=true\n")
		<-filters
		knockAt(e, 1111)
		settled(t, "first open", func() bool { return len(g.opens()) == 1 })
		if f := <-filters; f.ports != "2222:tcp" {
			t.Errorf("filter after first use: %+v", f)
		}
		knockAt(e, 1111) // used: no longer opens
		knockAt(e, 2222)
		settled(t, "second open", func() bool { return len(g.opens()) == 2 })
		if f := <-filters; f.ports != "" {
			t.Errorf("filter after exhaustion: %+v", f)
		}
		data, _ := os.ReadFile(seqs)
		if string(data) != "#1111\n#2222\n" {
			t.Errorf("file %q", data)
		}
		settled(t, "disable log", func() bool {
			return strings.Contains(buf.String(), "no more sequences left in the one time sequences file for door ot --> disabling the door")
		})
		knockAt(e, 2222)
		synctest.Wait()
		if len(g.opens()) != 2 {
			t.Errorf("exhausted door opened: %v", g.opens())
		}
	})
}

func TestReloadKeepsAttemptsOnUnchangedDoors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, g, _, _ := start(t, "[ssh]\nsequence=7000,8000,9000\n[web]\nsequence=1000,2000\n")
		knockAt(e, 7000, 8000)
		path := filepath.Join(t.TempDir(), "new.conf")
		os.WriteFile(path, []byte("[web]\nsequence=1000,3000\n[ssh]\nsequence=7000,8000,9000\nseq_timeout=60\n"), 0o600)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		knockAt(e, 9000)
		settled(t, "open after reload", func() bool { return len(g.opens()) == 1 })
		if got := g.opens()[0].door; got != "ssh" {
			t.Errorf("opened %q", got)
		}
	})
}

func TestSubmitNeverBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sesame.conf")
	os.WriteFile(path, []byte("[ssh]\nsequence=1\n"), 0o600)
	cfg, _ := config.Load(path)
	e, err := New(cfg, Options{Grants: &fakeGrants{}, Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Not running: the queue fills and the rest are dropped, not blocked on.
	for i := 0; i < 10; i++ {
		knockAt(e, 1)
	}
	if d := e.dropped.Load(); d != 6 {
		t.Errorf("dropped %d, want 6", d)
	}
}

func TestStageLinesAreLimitedButOpensAreNot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, g, buf, _ := start(t, "[ssh]\nsequence=7000,8000\n[one]\nsequence=5000:udp\nstart_command=true\n")
		// A flood of first knocks from 3000 sources, then a real knocker.
		for i := 0; i < 3000; i++ {
			src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			e.Submit(knock.Packet{Src: src, Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN})
			if i%500 == 0 {
				synctest.Wait() // let the queue drain
			}
		}
		e.Submit(knock.Packet{Src: src, Dst: local, Port: 5000, Proto: knock.UDP})
		settled(t, "the real open", func() bool { return len(g.opens()) == 1 })
		if !strings.Contains(buf.String(), "192.0.2.5: one: OPEN SESAME") {
			t.Error("open line missing")
		}
		if n := strings.Count(buf.String(), ": ssh: Stage 1"); n > StageLogBurst+50 || n < StageLogBurst {
			t.Errorf("%d stage lines logged for 3000 first knocks; want about the burst of %d", n, StageLogBurst)
		}
	})
}

// A replayed knock floods opens that grant nothing new: they are
// counted, not logged one by one; new grants are always logged.
func TestOpenLinesOfRepeatKnocksAreSummarised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, g, buf, _ := start(t, "[ping]\nsequence=7000\ntcpflags=syn\nstart_command=true\nstop_command=true\n",
			func(o *Options) { o.OpenLogEvery = 200 * time.Millisecond })
		g.set(grant.Extended)
		const n = 3000
		for i := 0; i < n; i++ {
			knockAt(e, 7000)
			if i%1000 == 999 {
				settled(t, "opens", func() bool { return len(g.opens()) == i+1 })
			}
		}
		g.set(grant.RateLimited)
		for i := 0; i < n; i++ {
			e.Submit(knock.Packet{Src: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN})
			if i%1000 == 999 {
				settled(t, "opens", func() bool { return len(g.opens()) == n+i+1 })
			}
		}
		g.set(grant.Granted)
		fresh := netip.MustParseAddr("192.0.2.99")
		e.Submit(knock.Packet{Src: fresh, Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN})
		time.Sleep(200 * time.Millisecond)
		settled(t, "summary", func() bool { return strings.Contains(buf.String(), "more OPEN SESAME in the last 200ms") })
		logs := buf.String()
		if c := strings.Count(logs, "OPEN SESAME: event=open"); c > OpenLogBurst+5 {
			t.Errorf("%d OPEN SESAME lines for %d opens that granted nothing new", c, 2*n)
		}
		if !strings.Contains(logs, "192.0.2.99: ping: OPEN SESAME") {
			t.Error("a new grant's open was not logged")
		}
	})
}

// A full attempt table is said at once, then summarised: one line per
// SummaryEvery however many attempts a flood evicts.
func TestAttemptTableFullIsSaidAtOnceThenSummarised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _, buf, _ := start(t, "[options]\nMaxAttempts=200\n[ssh]\nsequence=7000,8000\n")
		flood := func(from int) {
			for i := from; i < from+1000; i++ {
				e.Submit(knock.Packet{Src: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Dst: local, Port: 7000, Proto: knock.TCP, Flags: knock.SYN})
				if i%500 == 0 {
					synctest.Wait()
				}
			}
			synctest.Wait()
		}
		flood(0)
		if n := strings.Count(buf.String(), "attempt table full (MaxAttempts 200): evicted "); n != 1 {
			t.Fatalf("%d eviction lines at once, want 1:\n%s", n, buf.String())
		}
		time.Sleep(time.Second)
		flood(1000)
		time.Sleep(SummaryEvery)
		synctest.Wait()
		lines := regexp.MustCompile(`attempt table full \(MaxAttempts 200\): evicted (\d+) (more attempts in the last 10s)?`).FindAllStringSubmatch(buf.String(), -1)
		var total int
		for _, l := range lines {
			n, _ := strconv.Atoi(l[1])
			total += n
		}
		if len(lines) != 2 || lines[1][2] == "" || total != 2000-200 {
			t.Errorf("eviction lines %q: want the first at once and one summary, %d evictions in all", lines, 2000-200)
		}
	})
}
