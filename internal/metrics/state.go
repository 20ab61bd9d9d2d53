package metrics

import (
	"context"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds how long a scrape waits for the daemon's state.
const scrapeTimeout = 2 * time.Second

// descs are the families read from the daemon's state at each scrape.
type descs struct {
	buildInfo, doors, packets, captureDrops, queueDrops, attempts, evicted,
	grantsActive, rescueOpen, reloadOK, reloadAt *prometheus.Desc
	fleetConnected, fleetRevision, fleetLag, fleetUnpublished, fleetSnapshots, fleetRefused *prometheus.Desc
	version                                                                                 string
}

func newDescs(version string) descs {
	return descs{
		version:          version,
		buildInfo:        prometheus.NewDesc("sesame_build_info", "Always 1; the version of the running sesamed.", []string{"version"}, nil),
		doors:            prometheus.NewDesc("sesame_doors", "Doors in the running config.", nil, nil),
		packets:          prometheus.NewDesc("sesame_knock_packets_total", "Candidate knocks a capture handed to the matcher, by interface.", []string{"interface"}, nil),
		captureDrops:     prometheus.NewDesc("sesame_capture_drops_total", "Frames the kernel dropped because a capture socket's buffer was full, by interface.", []string{"interface"}, nil),
		queueDrops:       prometheus.NewDesc("sesame_knock_queue_drops_total", "Captured knocks dropped because the matcher's queue was full.", nil, nil),
		attempts:         prometheus.NewDesc("sesame_attempts_in_progress", "Knock sequences begun and neither completed nor timed out.", nil, nil),
		evicted:          prometheus.NewDesc("sesame_attempts_evicted_total", "Attempts evicted because the attempt table (MaxAttempts) was full.", nil, nil),
		grantsActive:     prometheus.NewDesc("sesame_grants_active", "Grants held now (until their revocation is journaled), by door.", []string{"door"}, nil),
		rescueOpen:       prometheus.NewDesc("sesame_rescue_open", "1 while the rescue port is open (sesamed unhealthy, or held open by an admin); 0 when closed or not configured.", nil, nil),
		reloadOK:         prometheus.NewDesc("sesame_config_last_reload_success", "1 when the config file is the config in force; 0 when the last reload (or the start) refused it.", nil, nil),
		reloadAt:         prometheus.NewDesc("sesame_config_last_reload_success_timestamp_seconds", "When a config last came into force (start or reload), as a Unix time.", nil, nil),
		fleetConnected:   prometheus.NewDesc("sesame_fleet_connected", "1 while the fleet's etcd answers; 0 when it does not or the fleet is off. Absent without a fleet.", nil, nil),
		fleetRevision:    prometheus.NewDesc("sesame_fleet_revision", "The last revision of the fleet group applied here (kept in the journal).", nil, nil),
		fleetLag:         prometheus.NewDesc("sesame_fleet_lag_revisions", "Revisions of the fleet's etcd the group watch has not confirmed yet.", nil, nil),
		fleetUnpublished: prometheus.NewDesc("sesame_fleet_unpublished_grants", "Grants made here that the fleet group does not hold yet.", nil, nil),
		fleetSnapshots:   prometheus.NewDesc("sesame_fleet_snapshots_total", "Re-lists of the fleet group (a start without a revision, history compacted while away).", nil, nil),
		fleetRefused:     prometheus.NewDesc("sesame_fleet_refused_values_total", "Values under the fleet group's prefix that did not parse.", nil, nil),
	}
}

// stateCollector collects the families read from the daemon's state.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.m.desc
	for _, x := range []*prometheus.Desc{d.buildInfo, d.doors, d.packets, d.captureDrops, d.queueDrops,
		d.attempts, d.evicted, d.grantsActive, d.rescueOpen, d.reloadOK, d.reloadAt,
		d.fleetConnected, d.fleetRevision, d.fleetLag, d.fleetUnpublished, d.fleetSnapshots, d.fleetRefused} {
		ch <- x
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.m.desc
	ch <- prometheus.MustNewConstMetric(d.buildInfo, prometheus.GaugeValue, 1, d.version)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, ok := c.m.state(ctx)
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(d.doors, prometheus.GaugeValue, float64(st.Doors))
	for _, i := range st.Interfaces {
		ch <- prometheus.MustNewConstMetric(d.packets, prometheus.CounterValue, float64(i.Packets), i.Name)
		ch <- prometheus.MustNewConstMetric(d.captureDrops, prometheus.CounterValue, float64(i.Drops), i.Name)
	}
	ch <- prometheus.MustNewConstMetric(d.queueDrops, prometheus.CounterValue, float64(st.QueueDrops))
	if st.EngineOK {
		ch <- prometheus.MustNewConstMetric(d.attempts, prometheus.GaugeValue, float64(st.Attempts))
		ch <- prometheus.MustNewConstMetric(d.evicted, prometheus.CounterValue, float64(st.Evicted))
	}
	// Grants are bounded by the doors' rate limits; their doors are
	// capped like every door label (several may share OtherDoor).
	active := make(map[string]int, len(st.GrantsActive))
	for door, n := range st.GrantsActive {
		if dl, ok := c.m.labels.activeDoor(door); ok {
			active[dl] += n
		}
	}
	doors := make([]string, 0, len(active))
	for door := range active {
		doors = append(doors, door)
	}
	sort.Strings(doors)
	for _, door := range doors {
		ch <- prometheus.MustNewConstMetric(d.grantsActive, prometheus.GaugeValue, float64(active[door]), door)
	}
	ch <- prometheus.MustNewConstMetric(d.rescueOpen, prometheus.GaugeValue, b2f(st.RescueOpen))
	ch <- prometheus.MustNewConstMetric(d.reloadOK, prometheus.GaugeValue, b2f(st.ReloadOK))
	if !st.ReloadSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(d.reloadAt, prometheus.GaugeValue, float64(st.ReloadSuccess.UnixNano())/1e9)
	}
	if f := st.Fleet; f != nil {
		ch <- prometheus.MustNewConstMetric(d.fleetConnected, prometheus.GaugeValue, b2f(f.Connected))
		ch <- prometheus.MustNewConstMetric(d.fleetRevision, prometheus.GaugeValue, float64(f.Revision))
		ch <- prometheus.MustNewConstMetric(d.fleetLag, prometheus.GaugeValue, float64(f.Lag))
		ch <- prometheus.MustNewConstMetric(d.fleetUnpublished, prometheus.GaugeValue, float64(f.Unpublished))
		ch <- prometheus.MustNewConstMetric(d.fleetSnapshots, prometheus.CounterValue, float64(f.Snapshots))
		ch <- prometheus.MustNewConstMetric(d.fleetRefused, prometheus.CounterValue, float64(f.Refused))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
