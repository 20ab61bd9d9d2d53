package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/supervisor"
)

// A capture whose filter the kernel refused makes the daemon unhealthy
// (the watchdog and the rescue's heartbeat consult health) and STATUS
// says why, until a filter attaches.
func TestCaptureWithoutFilterIsUnhealthy(t *testing.T) {
	c := newCaptures([]string{"eth7", "eth9"}, hclog.NewNullLogger())
	hb := supervisor.NewHeartbeats()
	hb.Register("engine", time.Hour)
	h := health{hb: hb, caps: c}
	if ok, why := h.Healthy(time.Now()); !ok {
		t.Fatalf("unhealthy at start: %q", why)
	}
	refused := fmt.Errorf("%w on eth9 (programs of 4096, 61 instructions): cannot allocate memory", capture.ErrFilterAttach)
	c.noteFilter("eth9", refused)
	ok, why := h.Healthy(time.Now())
	if ok || len(why) != 1 || !strings.Contains(why[0], "capture eth9") || !strings.Contains(why[0], "cannot allocate memory") {
		t.Errorf("Healthy = %v %q", ok, why)
	}
	if d := c.describe(); !strings.Contains(d, "eth9 (no filter: ") || !strings.Contains(d, "cannot allocate memory") {
		t.Errorf("describe = %q", d)
	}
	// Other errors (the interface is missing) are not this kind of trouble.
	c.noteFilter("eth7", fmt.Errorf("capture: open eth7: no such device"))
	if _, why := h.Healthy(time.Now()); len(why) != 1 {
		t.Errorf("a missing interface counted as a filter failure: %q", why)
	}
	c.noteFilter("eth9", nil)
	if ok, why := h.Healthy(time.Now()); !ok {
		t.Errorf("still unhealthy once the filter attached: %q", why)
	}
}

// The log says which kernel filter each capture runs, and why not eBPF:
// at every open, and when a filter update changes it.
func TestCaptureFilterLogged(t *testing.T) {
	var buf strings.Builder
	c := newCaptures([]string{"eth7"}, hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info}))
	ebpf := capture.Stats{Filter: capture.FilterEBPF, FilterExact: true, FilterInstructions: 262}
	refused := fmt.Errorf("capture: eBPF not permitted: operation not permitted")
	classic := capture.Stats{Filter: capture.FilterClassic, FilterInstructions: 1022, EBPFErr: refused}
	steps := []struct {
		st     capture.Stats
		opened bool
		want   []string // nil: nothing logged
	}{
		{ebpf, true, []string{"capture filter on eth7: eBPF, exact"}},
		{ebpf, false, nil},
		{ebpf, true, []string{"capture filter on eth7: eBPF, exact"}},
		{classic, false, []string{"capture filter on eth7: classic BPF (1022 instructions); eBPF not available: capture: eBPF not permitted",
			"capture filter on eth7 is coarser than the doors ask (1022 instructions)"}},
		{classic, false, nil},
	}
	for i, s := range steps {
		buf.Reset()
		c.logFilter("eth7", s.st, s.opened)
		got := buf.String()
		if s.want == nil && got != "" {
			t.Errorf("step %d: logged %q, want nothing", i, got)
		}
		for _, w := range s.want {
			if !strings.Contains(got, w) {
				t.Errorf("step %d: logged %q, want %q", i, got, w)
			}
		}
	}
}
