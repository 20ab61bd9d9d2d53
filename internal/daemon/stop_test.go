package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
	"github.com/sesame-knock/sesame/rescue"
)

// memRescue is a rescue.Firewall in memory: installed, held, and a
// heartbeat that never lapses in these tests (they do not run long).
type memRescue struct {
	ports     []knock.Port
	onInstall func() // called on each Install, before it takes effect

	mu        sync.Mutex
	installed bool
	held      bool
	calls     []string
}

func (r *memRescue) Name() string { return "nftables" }
func (r *memRescue) Spec() ([]knock.Port, []netip.Prefix, time.Duration) {
	return r.ports, nil, 30 * time.Second
}
func (r *memRescue) State(context.Context) ([]string, bool, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.installed {
		return []string{"not installed"}, false, 0, nil
	}
	if r.held {
		return nil, true, 0, nil
	}
	return nil, false, 30 * time.Second, nil
}
func (r *memRescue) Held(context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held, nil
}
func (r *memRescue) do(call string, f func()) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
	f()
	return nil
}
func (r *memRescue) Install(context.Context) error {
	if r.onInstall != nil {
		r.onInstall()
	}
	return r.do("install", func() { r.installed = true })
}
func (r *memRescue) Refresh(context.Context) error { return r.do("refresh", func() {}) }
func (r *memRescue) Open(context.Context) error    { return r.do("open", func() { r.held = true }) }
func (r *memRescue) Close(context.Context) error   { return r.do("close", func() { r.held = false }) }
func (r *memRescue) Remove(context.Context) error {
	return r.do("remove", func() { r.installed, r.held = false, false })
}
func (r *memRescue) RemoveOthers(context.Context) ([]string, error) { return nil, nil }

func (r *memRescue) callList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// A clean stop (SIGTERM: Run's context ends) disarms the rescue, so that
// a planned `systemctl stop` does not open it Rescue_After later, and
// says at warning what stays closed or open while sesamed is stopped
// (issue 18).
func TestCleanStopDisarmsTheRescue(t *testing.T) {
	for _, held := range []bool{false, true} {
		t.Run(map[bool]string{false: "armed", true: "held by an admin"}[held], func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "sesame.conf")
			os.WriteFile(conf, []byte("[options]\nRescue_Ports = 2222/tcp\n[ssh]\nsequence = 7000,8000\nopen = 22/tcp\n"), 0o600)
			fw := &recordingFirewall{}
			rfw := &memRescue{ports: []knock.Port{{Num: 2222, Proto: knock.TCP}}}
			dp := fakeDeps(fw, make(chan *fakeCapture, 1))
			dp.listen = control.Listen
			dp.newRescueFW = func(firewall.Kind, firewall.RescueSpec, hclog.Logger) (rescue.Firewall, error) { return rfw, nil }
			var stderr syncbuf.Buffer
			// READY=1 (`systemctl start` returning) comes after the rescue
			// is installed and closed: the ready service's line must not
			// be out yet when the rescue installs.
			rfw.onInstall = func() {
				if strings.Contains(stderr.String(), "starting up, listening on") {
					t.Errorf("the rescue was installed after READY=1:\n%s", stderr.String())
				}
			}
			opts := Options{ConfigPath: conf, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "ctl.sock"),
				Interfaces: []string{"lo"}, Stderr: &stderr}
			notify := notifytest.Use(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- run(ctx, opts, dp) }()
			for !strings.Contains(nextDatagram(t, notify), "READY=1") {
			}
			if held {
				rfw.Open(ctx) // sesame rescue open, from another process
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			out := stderr.String()
			removed := slices.Contains(rfw.callList(), "remove")
			want := "[WARN]  sesamed.rescue: rescue disarmed: sesamed stopped cleanly, so 2222:tcp does not open while it is stopped"
			if held {
				want = "[WARN]  sesamed.rescue: rescue port 2222:tcp stays open while sesamed is stopped: an admin holds it open"
			}
			if removed == held || !strings.Contains(out, want) {
				t.Errorf("rescue calls %q; want remove %v and %q in:\n%s", rfw.callList(), !held, want, out)
			}
			if want := "[WARN]  sesamed.firewall: stopped: Sesame's nftables chain is removed"; !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		})
	}
}

// A stop forced by a failure does not disarm: the heartbeat lapses and
// the rescue opens, as it should for a daemon that failed.
func TestFailureDoesNotDisarmTheRescue(t *testing.T) {
	rfw := &memRescue{ports: []knock.Port{{Num: 2222, Proto: knock.TCP}}}
	var buf syncbuf.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf})
	k := &keeper{log: log, fw: &firewalls{log: log}, now: time.Now,
		newFW: func(firewall.Kind, firewall.RescueSpec, hclog.Logger) (rescue.Firewall, error) { return rfw, nil }}
	cfg := &config.Config{Options: config.Options{Firewall: "nftables", RescuePorts: rfw.ports}}
	for _, clean := range []bool{false, true} {
		h := k.service(func() *config.Config { return cfg }, func() health { return health{hb: nil, caps: newCaptures(nil, log)} },
			func() bool { return clean })
		if err := h.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := h.stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if removed := slices.Contains(rfw.callList(), "remove"); removed != clean {
			t.Errorf("clean stop %v: calls %q", clean, rfw.callList())
		}
	}
}

// What stays after the stop, by backend: nftables keeps dropping the
// guarded ports (said with them), iptables' chain goes with its grants.
func TestStopSaysWhatStays(t *testing.T) {
	cfg := &config.Config{Options: config.Options{Firewall: "auto"}, Doors: []*config.Door{{Name: "ssh", Open: []knock.Port{{Num: 22, Proto: knock.TCP}}}}}
	for _, tt := range []struct {
		fw   firewall.Backend
		want string
	}{
		{keepingFirewall{&recordingFirewall{}}, "[WARN]  stopped: nftables keeps dropping new connections to 22:tcp from every address without a grant while sesamed is stopped"},
		{&recordingFirewall{noGuard: true}, "[WARN]  stopped: Sesame's nftables chain is removed, so its native grants are closed while sesamed is stopped"},
	} {
		var buf syncbuf.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &buf})
		f := &firewalls{log: log, newBackend: func(firewall.Kind, hclog.Logger) (firewall.Backend, error) { return tt.fw, nil }}
		h := f.service(func() *config.Config { return cfg }, func() []knock.Port { return guardedPorts(cfg) })
		if err := h.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := h.stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), tt.want) {
			t.Errorf("no %q in:\n%s", tt.want, buf.String())
		}
	}
}

// keepingFirewall is nftables as the daemon sees it: it guards its ports
// and stays over a clean stop.
type keepingFirewall struct{ *recordingFirewall }

func (keepingFirewall) KeepOnStop() bool { return true }
