package daemon

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"

	"github.com/sesame-knock/sesame/internal/metrics"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// TestSPARefusalsCountedInMetrics: every refused SPA packet counts in
// sesame_spa_refusals_total, also those a flood's log limit held back and
// summarised in one line (the sink counts that line's KeySuppressed).
func TestSPARefusalsCountedInMetrics(t *testing.T) {
	m := metrics.New("test")
	buf := &syncbuf.Buffer{}
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
	log.RegisterSink(m.Sink())
	r := newSPARig(t, accessConf(""))
	r.s = newSPA(log, func() time.Time { return r.now }, false)
	r.s.grants = r.grants
	r.fwH, r.sshH = r.s.handleFwknop, r.s.handleSSH
	if err := r.s.commit(r.files(t, accessConf("")), nil); err != nil {
		t.Fatal(err)
	}
	const sent = 100 // far beyond the limiter's burst of 10 lines
	junk := bytes.Repeat([]byte{0xff}, 200)
	for range sent {
		r.send(spaCli, junk)
	}
	r.s.lines.Close() // reports what it held back, as its timer would
	if !strings.Contains(buf.String(), "not logged one by one") {
		t.Fatalf("no summary line; the test does not exercise the limiter:\n%s", buf.String())
	}
	mfs, err := m.Own().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "sesame_spa_refusals_total" {
			for _, c := range mf.GetMetric() {
				total += counterValue(c)
			}
		}
	}
	if total != sent {
		t.Errorf("sesame_spa_refusals_total = %v over all reasons, want %d (every packet sent was refused)", total, sent)
	}
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}
