package rescue

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// fakeFirewall is an in-memory kernel with a settable clock: the
// heartbeat lapses when the clock passes its expiry, as the kernel's
// timeout would.
type fakeFirewall struct {
	now       time.Time
	ports     []knock.Port
	after     time.Duration
	installed bool
	held      bool
	expires   time.Time // zero: no heartbeat
	sweeps    int       // RemoveOthers calls
	// callsMu guards calls, which a test reads while Keep ticks.
	callsMu sync.Mutex
	calls   []string
	// onRefresh runs after a refresh, to interleave another writer.
	onRefresh func(*fakeFirewall)
}

func (f *fakeFirewall) Name() string { return "fake" }

func (f *fakeFirewall) Spec() ([]knock.Port, []netip.Prefix, time.Duration) {
	return f.ports, nil, f.after
}

func (f *fakeFirewall) Install(context.Context) error {
	f.record("install")
	f.installed = true
	return nil
}

func (f *fakeFirewall) Refresh(context.Context) error {
	f.record("refresh")
	f.expires = f.now.Add(f.after)
	if f.onRefresh != nil {
		f.onRefresh(f)
	}
	return nil
}

func (f *fakeFirewall) Open(context.Context) error {
	f.record("open")
	f.held, f.expires = true, time.Time{}
	return nil
}

func (f *fakeFirewall) Close(context.Context) error {
	f.record("close")
	f.held, f.expires = false, f.now.Add(f.after)
	return nil
}

func (f *fakeFirewall) State(context.Context) ([]string, bool, time.Duration, error) {
	var problems []string
	if !f.installed {
		problems = []string{"not installed"}
	}
	var left time.Duration
	if l := f.expires.Sub(f.now); !f.expires.IsZero() && l > 0 {
		left = l
	}
	return problems, f.held, left, nil
}

func (f *fakeFirewall) Held(context.Context) (bool, error) { return f.held, nil }

func (f *fakeFirewall) Remove(context.Context) error {
	f.record("remove")
	f.installed, f.held, f.expires = false, false, time.Time{}
	return nil
}

func (f *fakeFirewall) RemoveOthers(context.Context) ([]string, error) {
	f.sweeps++
	return nil, nil
}

// kernel is what the fake holds, as the Switch reads it.
func (f *fakeFirewall) kernel() kernelState {
	problems, held, left, _ := f.State(context.Background())
	return kernelState{Installed: len(problems) == 0, Problems: problems, Held: held, Left: left}
}

func (f *fakeFirewall) record(call string) {
	f.callsMu.Lock()
	defer f.callsMu.Unlock()
	f.calls = append(f.calls, call)
}

// takeCalls returns the kernel writes since the last call (reads are not
// recorded).
func (f *fakeFirewall) takeCalls() string {
	f.callsMu.Lock()
	defer f.callsMu.Unlock()
	c := strings.Join(f.calls, ",")
	f.calls = nil
	return c
}

// events records the "event" values logged, in order.
type events struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (e *events) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.Write(p)
}

// take returns "level:event" for every entry with an event key since the
// last call.
func (e *events) take(t *testing.T) string {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(e.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if ev, ok := m["event"].(string); ok {
			out = append(out, m["@level"].(string)+":"+ev)
		}
	}
	e.buf.Reset()
	return strings.Join(out, ",")
}

// newFakeSwitch is a Switch for 22/tcp with a 30s heartbeat on a fake
// kernel, logging JSON to ev.
func newFakeSwitch(t *testing.T) (*Switch, *fakeFirewall, *events) {
	t.Helper()
	f := &fakeFirewall{now: time.Unix(1_700_000_000, 0), ports: []knock.Port{{Num: 22, Proto: knock.TCP}}, after: 30 * time.Second}
	ev := &events{}
	log := hclog.New(&hclog.LoggerOptions{Output: ev, JSONFormat: true, Level: hclog.Trace})
	return New(f, log), f, ev
}
