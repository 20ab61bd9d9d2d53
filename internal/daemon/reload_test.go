package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/core/eventlog"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

type noGrants struct{}

func (noGrants) Open(*config.Door, netip.Addr, time.Time) grant.Outcome { return grant.Granted }

// reloadDaemon is a daemon with a real engine and grant manager on conf
// and no rescue. fw is the backend the daemon makes (none can be made
// when it is nil); it runs from the start when a door of conf opens
// ports. filters receives the engine's knock ports at each change.
func reloadDaemon(t *testing.T, conf string, fw *recordingFirewall) (*daemon, chan string, *syncbuf.Buffer) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf syncbuf.Buffer
	log, err := eventlog.New(eventlog.Options{Stderr: &buf, Journald: eventlog.JournaldOff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	d := newDaemon(Options{ConfigPath: path, StateDir: dir, Interfaces: []string{"eth0"}}, fakeDeps(fw, nil), log, cfg, []string{"eth0"})
	if fw != nil && len(guardedPorts(cfg)) > 0 {
		d.fw.b = fw
	}
	gopts := grant.Options{Commands: noCommands{}, Logger: log}
	if b := d.fw.backend(); b != nil {
		gopts.Firewall = b
	}
	d.grants = grant.New(gopts)
	t.Cleanup(func() { d.grants.Close(context.Background()) })
	filters := make(chan string, 16)
	eng, err := engine.New(cfg, engine.Options{Grants: d.grants, Logger: log,
		OnFilter: func(p []knock.Port, _ []netip.Addr) { filters <- knock.FormatSequence(p) }})
	if err != nil {
		t.Fatal(err)
	}
	d.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx, nil, time.Hour); close(done) }()
	t.Cleanup(func() { cancel(); <-done; eng.Close() })
	<-filters // the engine's first report
	if err := eng.SetLocal(ctx, []netip.Addr{local}); err != nil {
		t.Fatal(err)
	}
	return d, filters, &buf
}

var (
	local   = netip.MustParseAddr("10.0.0.1")
	knocker = netip.MustParseAddr("192.0.2.7")
)

func knock1(d *daemon, ports ...uint16) {
	for _, p := range ports {
		d.eng.Submit(knock.Packet{Src: knocker, Dst: local, Port: p, Proto: knock.TCP, Flags: knock.SYN})
	}
}

const runningConf = "[ssh]\nsequence = 7000,8000\nopen = 22/tcp\n"

// A reload the engine refuses (here: a one-time file it cannot open)
// leaves the firewall's guarded ports, the doors and the last good
// config as they were. The firewall used to be set up first.
func TestRefusedReloadChangesNothing(t *testing.T) {
	fw := &recordingFirewall{}
	d, filters, _ := reloadDaemon(t, runningConf, fw)
	ctx := context.Background()
	newConf := runningConf + "[web]\none_time_sequences = " + filepath.Join(t.TempDir(), "missing") + "\nopen = 443/tcp\n"
	cfg, err := config.Parse(d.opts.ConfigPath, []byte(newConf)) // Parse opens no files
	if err != nil {
		t.Fatal(err)
	}
	if err := d.apply(ctx, cfg, []byte(newConf)); err == nil {
		t.Fatal("the engine accepted a one-time file it cannot open")
	}
	if got := fw.setupCalls(); len(got) != 0 {
		t.Errorf("firewall set up with %q for a refused reload", got)
	}
	select {
	case f := <-filters:
		t.Errorf("engine doors changed by a refused reload: ports %s", f)
	default:
	}
	if d.config() == cfg {
		t.Error("the refused config became the running one")
	}
	if _, err := os.Stat(lastGoodPath(d.opts.StateDir)); err == nil {
		t.Error("a refused config was saved as the last good one")
	}

	// The firewall refuses: the engine keeps its doors too.
	fw.fail(errors.New("nft: no such table"))
	seqs := filepath.Join(t.TempDir(), "seqs")
	os.WriteFile(seqs, []byte(" 1111\n"), 0o600)
	newConf = runningConf + "[web]\none_time_sequences = " + seqs + "\nopen = 443/tcp\n"
	if err := d.reload(ctx, []byte(newConf)); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("reload with a failing firewall: %v", err)
	}
	select {
	case f := <-filters:
		t.Errorf("engine doors changed although the firewall refused: ports %s", f)
	default:
	}

	// Accepted: the firewall first, then the engine.
	fw.fail(nil)
	if err := d.reload(ctx, []byte(newConf)); err != nil {
		t.Fatal(err)
	}
	if got := fw.setupCalls(); !slices.Equal(got, []string{"22:tcp,443:tcp"}) {
		t.Errorf("firewall setups %q", got)
	}
	if f := <-filters; f != "1111:tcp,7000:tcp,8000:tcp" {
		t.Errorf("engine ports after the reload: %s", f)
	}
	if b, _ := os.ReadFile(lastGoodPath(d.opts.StateDir)); string(b) != newConf {
		t.Errorf("last good config %q", b)
	}
}

// Any config `sesame check` accepts can be reached by a reload: the first
// door with Open gets its firewall backend made, set up and handed to
// the grants, and a knock then opens its port natively. It used to be
// refused with "doors with Open need a restart to set up the firewall
// backend".
func TestReloadAddsTheFirstOpenDoor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fw := &recordingFirewall{}
		d, filters, _ := reloadDaemon(t, "[web]\nsequence = 5000\nstart_command = true\n", fw)
		if d.fw.backend() != nil {
			t.Fatal("a backend although no door opens ports")
		}
		ctx := context.Background()
		if err := d.reload(ctx, []byte(runningConf)); err != nil {
			t.Fatalf("reload adding the first door with Open: %v", err)
		}
		if got := fw.setupCalls(); !slices.Equal(got, []string{"22:tcp"}) {
			t.Errorf("firewall setups %q, want the new door's port", got)
		}
		if d.fw.backend() == nil {
			t.Fatal("the new backend is not the running one")
		}
		if f := <-filters; f != "7000:tcp,8000:tcp" {
			t.Errorf("engine ports after the reload: %s", f)
		}
		knock1(d, 7000, 8000)
		synctest.Wait()
		if got := fw.grantCalls(); !slices.Equal(got, []string{"192.0.2.7 22:tcp"}) {
			t.Errorf("native grants after a knock: %q", got)
		}
		d.reconcile(ctx) // reconcile follows the new backend
	})
}

// When the backend the first door with Open needs cannot be made (its
// tool is missing), the reload is refused and nothing changes.
func TestReloadRefusedWithoutABackend(t *testing.T) {
	d, filters, _ := reloadDaemon(t, "[web]\nsequence = 5000\nstart_command = true\n", nil)
	running := d.config()
	err := d.reload(context.Background(), []byte(runningConf))
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("reload without a backend: %v", err)
	}
	if d.config() != running || d.fw.backend() != nil {
		t.Error("a refused reload changed the config or the firewall")
	}
	if !strings.Contains(d.Status().ConfigErr, "executable file not found") {
		t.Errorf("STATUS does not say why: %q", d.Status().ConfigErr)
	}
	select {
	case f := <-filters:
		t.Errorf("engine doors changed by a refused reload: ports %s", f)
	default:
	}
}

// BenchmarkReload is a whole reload as sesamed does it: parse, prepare
// and commit the engine, and build the capture filter for the new knock
// ports (what the capture's SetFilter assembles). Issue 11: 100k doors
// took 23 s and blocked the engine; the target is well under a second.
func BenchmarkReload(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var confs [2][]byte
			for v := range confs {
				var sb strings.Builder
				for i := 0; i < n; i++ {
					p := 1024 + (i*7+v)%60000
					fmt.Fprintf(&sb, "[door%d]\nsequence = %d,%d:udp,9000\nseq_timeout = %d\nstart_command = true %%IP%%\n", i, p, p+1, 5+i%7)
				}
				confs[v] = []byte(sb.String())
			}
			dir := b.TempDir()
			path := filepath.Join(dir, "sesame.conf")
			os.WriteFile(path, confs[0], 0o600)
			cfg, err := config.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			log, _ := eventlog.New(eventlog.Options{Stderr: io.Discard, Journald: eventlog.JournaldOff})
			defer log.Close()
			local := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}
			var insns int
			eng, err := engine.New(cfg, engine.Options{Grants: noGrants{}, Logger: log,
				OnFilter: func(p []knock.Port, targets []netip.Addr) {
					prog, _, err := capture.BuildFilter(capture.FilterSpec{Dsts: append(slices.Clone(local), targets...), Ports: p}, capture.LinkEthernet)
					if err != nil {
						b.Fatal(err)
					}
					insns = len(prog)
				}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { eng.Run(ctx, nil, time.Hour); close(done) }()
			defer func() { cancel(); <-done; eng.Close() }()
			d := newDaemon(Options{ConfigPath: path, StateDir: dir, Interfaces: []string{"eth0"}}, fakeDeps(nil, nil), log, cfg, []string{"eth0"})
			d.eng = eng
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.reload(ctx, confs[(i+1)%2]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(insns), "filter-insns")
		})
	}
}

// A reload logs one line per outcome (issue 18): a refused config one
// error (the watcher does not repeat it), and the good config that
// follows says that the error is fixed.
func TestReloadOutcomeLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.conf")
	good := "[d]\n\tsequence = 7000\n"
	os.WriteFile(path, []byte(good), 0o600)
	var stderr syncbuf.Buffer
	opts := Options{ConfigPath: path, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "ctl.sock"),
		Interfaces: []string{"lo"}, Stderr: &stderr}
	dp := fakeDeps(nil, make(chan *fakeCapture, 1))
	dp.listen = control.Listen
	notify := notifytest.Use(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts, dp) }()
	for !strings.Contains(nextDatagram(t, notify), "READY=1") {
	}
	// waitReload waits for the datagram that ends a reload (READY=1 after
	// RELOADING=1) and returns the log lines since mark.
	waitReload := func(mark int) []string {
		t.Helper()
		for reloading := false; ; {
			s := nextDatagram(t, notify)
			reloading = reloading || strings.Contains(s, "RELOADING=1")
			if reloading && strings.Contains(s, "READY=1") {
				break
			}
		}
		return strings.Split(strings.TrimSpace(stderr.String()[mark:]), "\n")
	}
	count := func(lines []string, level, text string) int {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, level) && strings.Contains(l, text) {
				n++
			}
		}
		return n
	}

	mark := len(stderr.String())
	os.WriteFile(path, []byte("[d]\n\tsequence = 0\n"), 0o600)
	lines := waitReload(mark)
	if n := count(lines, "[ERROR]", ""); n != 1 || count(lines, "[ERROR]", "config not reloaded, keeping the running one: "+path+":2:") != 1 {
		t.Errorf("a refused reload logged %d errors, want one that names file and line:\n%s", n, strings.Join(lines, "\n"))
	}

	mark = len(stderr.String())
	os.WriteFile(path, []byte(good+"[e]\n\tsequence = 7100\n"), 0o600)
	lines = waitReload(mark)
	if count(lines, "[INFO]", "config reloaded: 2 doors; valid again, the config error logged before is fixed") != 1 ||
		count(lines, "", "config reloaded") != 1 || count(lines, "", "new config in effect") != 0 {
		t.Errorf("the good config after a refused one:\n%s", strings.Join(lines, "\n"))
	}

	mark = len(stderr.String())
	os.WriteFile(path, []byte(good), 0o600)
	lines = waitReload(mark)
	if count(lines, "", "config reloaded: 1 doors") != 1 || count(lines, "", "valid again") != 0 {
		t.Errorf("a plain reload:\n%s", strings.Join(lines, "\n"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
