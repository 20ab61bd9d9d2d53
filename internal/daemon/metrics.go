package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/metrics"
)

// metricsServer serves /metrics at the config's Metrics address and
// writes Metrics_File every metrics.TextfileEvery seconds. A listener
// that cannot be had at start is logged and shown by sesame status (the
// doors matter more than their metrics); a reload to an address that
// cannot be had is refused.
type metricsServer struct {
	m   *metrics.Metrics
	log hclog.Logger
	// listen is net.Listen; tests replace it.
	listen func(network, addr string) (net.Listener, error)
	w      worker // the textfile writer
	// writeMu serialises writes of the textfile and the removal of the
	// previous config's, so that a write in progress cannot bring it back.
	writeMu sync.Mutex

	mu      sync.Mutex // guards all following fields
	addr    netip.AddrPort
	srv     *http.Server
	srvDone chan struct{}
	lnErr   string // why the config's address is not served
	file    string
	fileAt  time.Time
	fileErr string
}

func newMetricsServer(m *metrics.Metrics, log hclog.Logger) *metricsServer {
	return &metricsServer{m: m, log: log, listen: net.Listen}
}

// metricsPlan is the metrics' part of a reload: a listener already open
// on a new address (nil when the address did not change or is off).
type metricsPlan struct {
	addr netip.AddrPort
	ln   net.Listener
	file string
	// retry: the address did not change but is not served; commit tries
	// again, and a failure then does not refuse the reload.
	retry bool
	// keep: the address did not change and is served: the server stays.
	keep bool
}

// prepare opens the listener cfg asks for, if it is a new address. An
// error refuses the reload, naming the config's line.
func (s *metricsServer) prepare(cfg *config.Config) (metricsPlan, error) {
	p := metricsPlan{addr: cfg.Options.Metrics, file: cfg.Options.MetricsFile}
	s.mu.Lock()
	same, serving := p.addr == s.addr, s.srv != nil
	s.mu.Unlock()
	switch {
	case !p.addr.IsValid():
		return p, nil
	case same && serving:
		p.keep = true
		return p, nil
	case same:
		p.retry = true
		return p, nil
	}
	ln, err := s.listen("tcp", p.addr.String())
	if err != nil {
		return metricsPlan{}, fmt.Errorf("%s:%d: Metrics: %w", cfg.File, cfg.Options.Lines.Of(config.KeyMetrics), err)
	}
	p.ln = ln
	return p, nil
}

// discard releases what prepare opened for a refused reload.
func (s *metricsServer) discard(p metricsPlan) {
	if p.ln != nil {
		p.ln.Close()
	}
}

// commit serves the plan's address (closing the old listener) and
// writes the plan's file from now on.
func (s *metricsServer) commit(p metricsPlan) {
	s.mu.Lock()
	oldFile := s.file
	if p.file != oldFile {
		s.file, s.fileAt, s.fileErr = p.file, time.Time{}, ""
	}
	s.mu.Unlock()
	if oldFile != "" && p.file != oldFile {
		// Left behind, node_exporter would serve it for ever.
		s.writeMu.Lock()
		err := os.Remove(oldFile)
		s.writeMu.Unlock()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("metrics file of the previous config not removed", "metrics_file", oldFile, "error", err)
		}
	}
	if p.keep {
		return
	}
	if p.retry {
		ln, err := s.listen("tcp", p.addr.String())
		if err != nil {
			s.failed(p.addr, err)
		}
		p.ln = ln
	}
	s.mu.Lock()
	old, oldDone := s.srv, s.srvDone
	s.srv, s.srvDone, s.addr = nil, nil, p.addr
	if p.ln != nil || !p.addr.IsValid() {
		s.lnErr = ""
	}
	if p.ln != nil {
		s.srv, s.srvDone = s.serveLocked(p.ln)
	}
	s.mu.Unlock()
	shutdown(old, oldDone)
	if p.ln != nil {
		s.log.Info("serving metrics at http://"+p.addr.String()+"/metrics", "address", p.addr.String())
	}
}

func (s *metricsServer) failed(addr netip.AddrPort, err error) {
	s.mu.Lock()
	s.lnErr = err.Error()
	s.mu.Unlock()
	s.log.Error(fmt.Sprintf("metrics not served at %s: %v", addr, err), "address", addr.String(), "error", err)
}

func (s *metricsServer) serveLocked(ln net.Listener) (*http.Server, chan struct{}) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Gatherer(), promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 15 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server: "+err.Error(), "error", err)
		}
	}()
	return srv, done
}

func shutdown(srv *http.Server, done chan struct{}) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
	<-done
}

// writeFile writes the textfile, if one is configured, and notes how it
// went (a failure is logged when it first happens, not every 15 s).
func (s *metricsServer) writeFile() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	path := s.file
	s.mu.Unlock()
	if path == "" {
		return
	}
	err := metrics.WriteFile(path, s.m.Own())
	s.mu.Lock()
	defer s.mu.Unlock()
	if path != s.file {
		return
	}
	if err != nil {
		if s.fileErr != err.Error() {
			s.log.Error(err.Error(), "metrics_file", path, "error", err)
		}
		s.fileErr = err.Error()
		return
	}
	if s.fileErr != "" {
		s.log.Info("metrics file written again", "metrics_file", path)
	}
	s.fileAt, s.fileErr = time.Now(), ""
}

// service serves the first config's metrics (after the daemon's state
// can be read: every other service that feeds it has started) and
// writes the textfile until it stops; its stop writes the file once more.
func (s *metricsServer) service(cfg func() *config.Config, source metrics.Source) hook {
	return hook{name: "metrics", start: func(ctx context.Context) error {
		s.m.SetSource(source)
		c := cfg()
		if c.Options.MetricsFile != "" {
			if err := metrics.RemoveTemp(c.Options.MetricsFile); err != nil {
				s.log.Warn("metrics file: removing a leftover temporary file", "error", err)
			}
		}
		p := metricsPlan{addr: c.Options.Metrics, file: c.Options.MetricsFile, retry: c.Options.Metrics.IsValid()}
		s.commit(p)
		s.w.goRun(ctx, func(ctx context.Context) {
			t := time.NewTicker(metrics.TextfileEvery)
			defer t.Stop()
			for {
				s.writeFile()
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
		return nil
	}, stop: func(context.Context) error {
		s.w.stop()
		s.mu.Lock()
		srv, done := s.srv, s.srvDone
		s.srv, s.srvDone = nil, nil
		s.mu.Unlock()
		shutdown(srv, done)
		s.writeFile()
		return nil
	}}
}

// status is the metrics' part of sesame status.
func (s *metricsServer) status() control.MetricsStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := control.MetricsStatus{File: s.file, FileAt: s.fileAt}
	if s.srv != nil {
		st.Listen = "http://" + s.addr.String() + "/metrics"
	}
	var errs []string
	if s.lnErr != "" {
		errs = append(errs, "not served at "+s.addr.String()+": "+s.lnErr)
	}
	if s.fileErr != "" {
		errs = append(errs, s.fileErr)
	}
	st.Error = strings.Join(errs, "; ")
	return st
}
