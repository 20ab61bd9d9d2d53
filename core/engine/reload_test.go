package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/knock"
)

// -4 ignores IPv6 knocks; an IPv4-mapped source came in an IPv6 packet,
// so it is one of them (it used to count as its IPv4 address).
func TestSkipIPv6IgnoresMappedSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sesame.conf")
		os.WriteFile(path, []byte("[ssh]\nsequence=7000,8000\n"), 0o600)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		g := &fakeGrants{}
		e, err := New(cfg, Options{Grants: g, SkipIPv6: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.Run(ctx, nil, 0); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		local6 := netip.MustParseAddr("fd00::1")
		e.SetLocal(ctx, []netip.Addr{local, local6})
		mapped := netip.AddrFrom16(src.As16())
		for _, p := range []uint16{7000, 8000} {
			e.Submit(knock.Packet{Src: mapped, Dst: local6, Port: p, Proto: knock.TCP, Flags: knock.SYN})
		}
		// A barrier: the engine handles packets in order.
		other := netip.MustParseAddr("192.0.2.99")
		for _, p := range []uint16{7000, 8000} {
			e.Submit(knock.Packet{Src: other, Dst: local, Port: p, Proto: knock.TCP, Flags: knock.SYN})
		}
		settled(t, "the IPv4 knocker's open", func() bool { return len(g.opens()) >= 1 })
		if got := g.opens(); len(got) != 1 || got[0].src != other {
			t.Errorf("opened %v, want only %s", got, other)
		}
	})
}

// Prepare opens what the new config needs without changing what runs; a
// refused reload is discarded and leaves the engine as it was.
func TestPrepareChangesNothingUntilCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		seqs := filepath.Join(dir, "seqs")
		os.WriteFile(seqs, []byte(" 1111\n 2222\n"), 0o600)
		e, g, _, filters := start(t, "[ssh]\nsequence=7000,8000\n")
		<-filters
		ctx := context.Background()

		// The engine refuses a config whose one-time file it cannot open
		// (Parse does not open files, so the config itself is fine).
		bad, err := config.Parse("bad.conf", []byte("[ot]\none_time_sequences="+filepath.Join(dir, "missing")+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := e.Prepare(ctx, bad); err == nil || p != nil {
			t.Fatalf("Prepare of a missing one-time file: %v, %v", p, err)
		}

		good, err := config.Load(writeConf(t, "[ssh]\nsequence=7000,9000\n[ot]\none_time_sequences="+seqs+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.Prepare(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		// Prepared, not committed: the old doors still run, no filter change.
		knockAt(e, 7000, 8000)
		settled(t, "open on the old config", func() bool { return len(g.opens()) == 1 })
		select {
		case f := <-filters:
			t.Fatalf("filter changed before Commit: %+v", f)
		default:
		}
		e.Discard(p)
		if len(p.fresh) != 1 {
			t.Fatalf("Prepare opened %d files, want the one-time file", len(p.fresh))
		}
		if err := p.fresh[0].Consume(); err == nil {
			t.Error("a discarded one-time file is still open")
		}

		p, err = e.Prepare(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Commit(ctx, p); err != nil {
			t.Fatal(err)
		}
		if f := <-filters; f.ports != "1111:tcp,7000:tcp,9000:tcp" {
			t.Errorf("filter after Commit: %+v", f)
		}
		knockAt(e, 7000, 9000)
		settled(t, "open on the new config", func() bool { return len(g.opens()) == 2 })
	})
}

func writeConf(t testing.TB, conf string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sesame.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bigConf is a config of n doors, each with its own sequence; one door
// in every thousand is a one-time door when oneTimeDir is set.
func bigConf(n int, oneTimeDir string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[door%d]\n", i)
		if oneTimeDir != "" && i%1000 == 0 {
			path := filepath.Join(oneTimeDir, fmt.Sprint("ot", i))
			fmt.Fprintf(&b, "one_time_sequences = %s\n", path)
		} else {
			p := 1024 + i%60000
			fmt.Fprintf(&b, "sequence = %d,%d:udp,9000\n", p, p+1)
		}
		fmt.Fprintf(&b, "seq_timeout = %d\nstart_command = true %%IP%%\n", 5+i%7)
	}
	return b.String()
}

// A reload is linear in the doors: 100k doors reload in well under a
// second (issue 11: it took 23 s). Parsing is BenchmarkParse in
// core/config, the capture filter BenchmarkBuildFilter in core/capture.
func BenchmarkReload(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < n; i += 1000 {
				os.WriteFile(filepath.Join(dir, fmt.Sprint("ot", i)), []byte(strings.Repeat(" 1111,2222\n", 10)), 0o600)
			}
			cfg, err := config.Parse("big.conf", []byte(bigConf(n, dir)))
			if err != nil {
				b.Fatal(err)
			}
			var ports int
			e, err := New(cfg, Options{Grants: &fakeGrants{}, Logger: hclog.NewNullLogger(),
				OnFilter: func(p []knock.Port, _ []netip.Addr) { ports = len(p) }})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { e.Run(ctx, nil, time.Hour); close(done) }()
			defer func() { cancel(); <-done; e.Close() }()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg.Doors[i%n].SeqTimeout += time.Millisecond
				if err := e.Reload(ctx, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ports), "knock-ports")
		})
	}
}

// A one-time sequence used on a door among 100k: the matcher changes
// one door and the capture filter spec is recomputed.
func BenchmarkOneTimeRotation(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			seqs := filepath.Join(dir, "seqs")
			lines := make([]string, b.N+1)
			for i := range lines {
				lines[i] = fmt.Sprintf(" %d,%d", 1000+i%50000, 2000+i%50000)
			}
			os.WriteFile(seqs, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
			conf := bigConf(n-1, "") + "[ot]\none_time_sequences = " + seqs + "\n"
			cfg, err := config.Parse("big.conf", []byte(conf))
			if err != nil {
				b.Fatal(err)
			}
			e, err := New(cfg, Options{Grants: &fakeGrants{}, Logger: hclog.NewNullLogger(),
				OnFilter: func([]knock.Port, []netip.Addr) {}})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// What an open on the one-time door does, on the engine
				// goroutine (here the benchmark's: Run is not running).
				e.useOneTime(n - 1)
			}
		})
	}
}
