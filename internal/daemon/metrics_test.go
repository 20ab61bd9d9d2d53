package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A reload to a Metrics address sesamed cannot listen on is refused,
// naming the config's line, and changes nothing; one it can listen on
// serves /metrics there; a reload that removes a door removes its series.
func TestReloadMetricsAddress(t *testing.T) {
	fw := &recordingFirewall{}
	d, filters, _ := reloadDaemon(t, runningConf+"[web]\nsequence = 9000\nstart_command = true\n", fw)
	defer d.ms.service(d.config, d.metricsState).stop(context.Background())
	var ln net.Listener
	d.ms.listen = func(network, addr string) (net.Listener, error) {
		if addr == "127.0.0.1:10171" {
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRINUSE}
		}
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0") // stands for addr
		return ln, err
	}
	d.metrics.SetSource(d.metricsState)
	running := d.config()
	err := d.reload(context.Background(), []byte("[options]\nMetrics = 127.0.0.1:10171\n"+runningConf))
	if err == nil || !strings.Contains(err.Error(), d.opts.ConfigPath+":2: Metrics: ") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("reload to an address in use: %v", err)
	}
	if d.config() != running || d.ms.status().Listen != "" {
		t.Fatal("a refused reload changed the config or the metrics")
	}
	select {
	case f := <-filters:
		t.Fatalf("engine doors changed by a refused reload: %s", f)
	default:
	}

	// An address it can have: served; the web door, removed, is gone.
	if err := d.reload(context.Background(), []byte("[options]\nMetrics = 127.0.0.2:10171\n"+runningConf)); err != nil {
		t.Fatal(err)
	}
	if st := d.ms.status(); st.Listen != "http://127.0.0.2:10171/metrics" || st.Error != "" {
		t.Errorf("metrics status %+v", st)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if !strings.Contains(body, `sesame_grants_active{door="ssh"} 0`) || strings.Contains(body, `door="web"`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics after the reload:\n%s", body)
	}
	// A reload that keeps the address keeps serving.
	if err := d.reload(context.Background(), []byte("[options]\nMetrics = 127.0.0.2:10171\n"+runningConf+"[new]\nsequence = 9100\n")); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("/metrics not served after a reload that kept its address: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `sesame_grants_active{door="new"} 0`) {
		t.Errorf("/metrics after the second reload:\n%s", b)
	}
	// A new Metrics_File: the old one goes (node_exporter would serve it
	// for ever), the new one is written.
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.prom"), filepath.Join(dir, "b.prom")
	for _, f := range []string{first, second} {
		if err := d.reload(context.Background(), []byte("[options]\nMetrics = 127.0.0.2:10171\nMetrics_File = "+f+"\n"+runningConf)); err != nil {
			t.Fatal(err)
		}
		d.ms.writeFile()
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the previous Metrics_File is still there: %v", err)
	}
	if b, err := os.ReadFile(second); err != nil || !strings.Contains(string(b), "sesame_doors 1") {
		t.Errorf("the new Metrics_File: %v\n%s", err, b)
	}
	// Off again: the listener closes.
	if err := d.reload(context.Background(), []byte(runningConf)); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/metrics"); err == nil {
		t.Error("/metrics still served after Metrics was removed")
	}
}
