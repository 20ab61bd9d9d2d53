package failsafe

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// fakeGate is an in-memory kernel with a settable clock: the heartbeat
// lapses when the clock passes its expiry, as the kernel's timeout would.
type fakeGate struct {
	now       time.Time
	after     time.Duration
	installed bool
	held      bool
	expires   time.Time // zero: no heartbeat
	calls     []string
	// onRefresh runs after a refresh, to interleave another writer.
	onRefresh func(*fakeGate)
}

func (f *fakeGate) Name() string { return "fake" }

func (f *fakeGate) Install(context.Context) error {
	f.calls = append(f.calls, "install")
	f.installed = true
	return nil
}

func (f *fakeGate) Refresh(context.Context) error {
	f.calls = append(f.calls, "refresh")
	f.expires = f.now.Add(f.after)
	if f.onRefresh != nil {
		f.onRefresh(f)
	}
	return nil
}

func (f *fakeGate) Drop(context.Context) error {
	f.calls = append(f.calls, "drop")
	f.expires = time.Time{}
	return nil
}

func (f *fakeGate) SetHold(_ context.Context, on bool) error {
	if on {
		f.calls = append(f.calls, "hold")
	} else {
		f.calls = append(f.calls, "unhold")
	}
	f.held = on
	return nil
}

func (f *fakeGate) State(context.Context) (kernelState, error) {
	k := kernelState{Installed: f.installed, Held: f.held}
	if !f.installed {
		k.Problems = []string{"not installed"}
	}
	if left := f.expires.Sub(f.now); !f.expires.IsZero() && left > 0 {
		k.Left = left
	}
	return k, nil
}

func (f *fakeGate) Held(context.Context) (bool, error) { return f.held, nil }

func (f *fakeGate) Remove(context.Context) error {
	f.calls = append(f.calls, "remove")
	f.installed, f.held, f.expires = false, false, time.Time{}
	return nil
}

// takeCalls returns the kernel writes since the last call (reads are not
// recorded).
func (f *fakeGate) takeCalls() string {
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

func newFakeSwitch(t *testing.T) (*Switch, *fakeGate, *events, *int) {
	t.Helper()
	s, err := newSpec(Options{Ports: []knock.Port{{Num: 22, Proto: knock.TCP}}, After: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGate{now: time.Unix(1_700_000_000, 0), after: s.After}
	ev := &events{}
	log := hclog.New(&hclog.LoggerOptions{Output: ev, JSONFormat: true, Level: hclog.Trace})
	sweeps := new(int)
	sw := func(context.Context) ([]string, error) { *sweeps++; return nil, nil }
	return newSwitch(s, g, sw, log), g, ev, sweeps
}
