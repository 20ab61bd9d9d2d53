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
