// Package metrics is Sesame's Prometheus families: their names, labels
// and bounds. Counters of events are fed by Sink, an hclog sink that
// routes log entries on their event.Kind and fields (never their text);
// the daemon's state (doors, captures, attempts, grants, rescue, reload)
// is read at each scrape through a Source. It also writes the families
// to a file atomically for node_exporter's textfile collector. It opens
// no listener and reads no kernel state itself: the daemon does.
//
// Labels never carry a knocker's address. Door labels are bounded by the
// running config (SetDoors): a door a reload removed disappears, and
// door names that come from elsewhere (SPA stanzas) are capped.
package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values of sesame_grants_total's result.
const (
	ResultGranted  = "granted"
	ResultExtended = "extended"
	ResultRefused  = "refused"
)

// Label values of sesame_command_duration_seconds's kind.
const (
	CommandStart = "start"
	CommandStop  = "stop"
)

// Bounds on label values that do not come from the running config.
const (
	// MaxExtraDoors caps door label values outside the running config
	// (an SPA stanza's door, a grant resumed for a door since removed);
	// further ones are counted under OtherDoor.
	MaxExtraDoors = 256
	// MaxReasons caps the distinct reason label values of one family;
	// further ones are counted under OtherReason.
	MaxReasons  = 64
	OtherDoor   = "_other"
	OtherReason = "other"
)

// Interface is one capture's counters since the daemon started.
type Interface struct {
	Name    string
	Packets uint64 // candidate knocks handed to the matcher
	Drops   uint64 // frames the kernel dropped: the socket's buffer was full
}

// State is what a scrape reads from the daemon.
type State struct {
	Doors      int
	Interfaces []Interface
	// QueueDrops counts captured knocks dropped because the matcher's
	// queue was full.
	QueueDrops uint64
	// EngineOK: Attempts and Evicted were read (the engine answered).
	EngineOK bool
	Attempts int
	Evicted  uint64
	// GrantsActive is the number of grants held, by door; the running
	// config's doors are there with 0.
	GrantsActive map[string]int
	RescueOpen   bool
	// ReloadOK is false while the config file is not the config in
	// force (the last reload, or the start, refused it);
	// ReloadSuccess is when a config last came into force.
	ReloadOK      bool
	ReloadSuccess time.Time
	// Fleet is the fleet membership; nil when no fleet is configured
	// (and then no sesame_fleet_* family is exported).
	Fleet *Fleet
}

// Fleet is the daemon's membership of its fleet group.
type Fleet struct {
	// Connected: etcd answered the last probe (false while the fleet is
	// off or cut off).
	Connected bool
	// Lag is how many revisions of the cluster the watch has not
	// confirmed yet; Unpublished how many grants made here the group
	// does not hold yet.
	Lag         int64
	Unpublished int
	// Revision is the last revision of the group applied here.
	Revision int64
	// Snapshots counts re-lists of the group, Refused values from the
	// group that did not parse (both since the start).
	Snapshots, Refused int
}

// Source reads the daemon's state for a scrape; it must return within
// ctx.
type Source func(ctx context.Context) State

// Metrics holds the families. Its methods are safe from any goroutine.
type Metrics struct {
	all  *prometheus.Registry // Sesame's families, the process's and Go's
	own  *prometheus.Registry // Sesame's families only (the textfile)
	desc descs

	opens        *prometheus.CounterVec   // door
	grants       *prometheus.CounterVec   // door, result
	revocations  *prometheus.CounterVec   // door, reason
	stopFailures *prometheus.CounterVec   // door
	spaRefusals  *prometheus.CounterVec   // reason
	commands     *prometheus.HistogramVec // door, kind
	latency      prometheus.Histogram
	repairs      prometheus.Counter

	labels labels

	mu     sync.Mutex // guards source
	source Source
}

// New returns the families for a daemon of the given version. Until
// SetSource, scrapes show only the counters.
func New(version string) *Metrics {
	m := &Metrics{all: prometheus.NewRegistry(), own: prometheus.NewRegistry(), desc: newDescs(version)}
	m.labels.init()
	m.opens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sesame_opens_total",
		Help: "Knock sequences completed, by door."}, []string{"door"})
	m.grants = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sesame_grants_total",
		Help: "Grants by door and result: granted (applied, or a knockd-style start command run), extended (a holder's knock moved its deadline), refused (rate limit, journal, start command marker)."},
		[]string{"door", "result"})
	m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sesame_revocations_total",
		Help: "Grants revoked (stop command and native revoke done, journaled), by door and reason (expire, admin, reload, refused, replay, forgotten)."},
		[]string{"door", "reason"})
	m.stopFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sesame_stop_failures_total",
		Help: "Failed attempts of a stop command or native revoke, by door; each is retried, and what the grant opened stays open until one succeeds."},
		[]string{"door"})
	m.spaRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sesame_spa_refusals_total",
		Help: "SPA and SSH-signed knocks refused, by reason."}, []string{"reason"})
	m.commands = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sesame_command_duration_seconds",
		Help:    "How long door commands ran, by door and kind (start, stop).",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}},
		[]string{"door", "kind"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sesame_grant_latency_seconds",
		Help:    "From the knock that completed a sequence (as the matcher took it) to its grant applied: native access in the firewall, or the start command finished.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}})
	m.repairs = prometheus.NewCounter(prometheus.CounterOpts{Name: "sesame_firewall_repairs_total",
		Help: "Repairs the reconcile loop made: Sesame's firewall objects recreated, native grants put back, stale ones removed."})
	for _, c := range []prometheus.Collector{m.opens, m.grants, m.revocations, m.stopFailures, m.spaRefusals,
		m.commands, m.latency, m.repairs, stateCollector{m}} {
		m.own.MustRegister(c)
	}
	m.all.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	m.all.MustRegister(m.own)
	return m
}

// Gatherer returns every family: Sesame's, the process's and Go's (what
// /metrics serves).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.all }

// Own returns Sesame's families only (what the textfile holds: node_exporter
// has process_* and go_* families of its own, and refuses a textfile that
// repeats them).
func (m *Metrics) Own() prometheus.Gatherer { return m.own }

// SetSource sets what scrapes read the daemon's state from.
func (m *Metrics) SetSource(s Source) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source = s
}

func (m *Metrics) state(ctx context.Context) (State, bool) {
	m.mu.Lock()
	s := m.source
	m.mu.Unlock()
	if s == nil {
		return State{}, false
	}
	return s(ctx), true
}

// SetDoors makes doors the running config's: their series are kept;
// those of doors a reload removed are deleted, and later events naming
// such a door are not counted (its last grants expiring), so that it
// disappears.
func (m *Metrics) SetDoors(doors []string) {
	for _, d := range m.labels.setDoors(doors) {
		for _, v := range []*prometheus.MetricVec{m.opens.MetricVec, m.grants.MetricVec, m.revocations.MetricVec,
			m.stopFailures.MetricVec, m.commands.MetricVec} {
			v.DeletePartialMatch(prometheus.Labels{"door": d})
		}
	}
}

// Opened counts a completed knock sequence of door.
func (m *Metrics) Opened(door string) {
	if d, ok := m.labels.door(door); ok {
		m.opens.WithLabelValues(d).Inc()
	}
}

// Command records how long a door's command ran; kind is CommandStart or
// CommandStop.
func (m *Metrics) Command(door, kind string, d time.Duration) {
	if dl, ok := m.labels.door(door); ok {
		m.commands.WithLabelValues(dl, kind).Observe(d.Seconds())
	}
}

// GrantLatency records the time from a sequence's last knock to its
// grant applied.
func (m *Metrics) GrantLatency(d time.Duration) { m.latency.Observe(max(d, 0).Seconds()) }

// Repaired counts n repairs of the reconcile loop.
func (m *Metrics) Repaired(n int) {
	if n > 0 {
		m.repairs.Add(float64(n))
	}
}
