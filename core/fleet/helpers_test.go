package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/etcdtest"
)

// What etcd promises, with the defaults etcdtest runs it with: a
// request is answered, or fails, within the server's request timeout
// (5 s plus two election timeouts of 1 s: etcd's ReqTimeout), which
// also bounds a leader election.
const (
	etcdElection   = time.Second
	etcdReqTimeout = 5*time.Second + 2*etcdElection
)

// converge is how long this package may take, by its own constants, to
// bring a node up to date after a fault heals: a dead connection noticed
// (keepaliveTime+keepaliveTimeout), a redial (reconnectMax), a watch
// retry (DefaultBackoffMax), a stalled watch found (stallProbes probes),
// and one request of etcd's.
const converge = keepaliveTime + keepaliveTimeout + reconnectMax + DefaultBackoffMax +
	stallProbes*DefaultProbeInterval + etcdReqTimeout

// settle bounds every wait for the fleet to converge: twice converge,
// room for a loaded 2-core machine, where goroutines and etcd's own
// timers run late.
const settle = 2 * converge

// seed prints and returns the test's random seed (SESAME_TEST_SEED
// overrides it).
func seed(tb testing.TB) *rand.Rand {
	tb.Helper()
	s := rand.Uint64()
	if v := os.Getenv("SESAME_TEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			tb.Fatalf("SESAME_TEST_SEED=%q: %v", v, err)
		}
		s = n
	}
	tb.Logf("seed %d (set SESAME_TEST_SEED to repeat)", s)
	return rand.New(rand.NewPCG(s, s^0x5e5a3e))
}

// node is what a daemon would be to the fleet: a consumer that applies
// grants into a map (keyed by id) and records the revision, as the
// daemon's journal would.
type node struct {
	mu        sync.Mutex // guards all following fields
	grants    map[string]Grant
	rev       int64
	snapshots int
	changes   []Event
	changed   chan struct{} // closed and replaced on every change
	// onSnapshot, when set, is called (without mu) after each snapshot
	// is applied, before the watcher goes on: a test can cut the network
	// at that point.
	onSnapshot func()
}

func newNode(rev int64) *node {
	return &node{grants: make(map[string]Grant), rev: rev, changed: make(chan struct{})}
}

func (n *node) FleetRevision() (int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rev, nil
}

func (n *node) FleetChanges(rev int64, evs []Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if rev <= n.rev {
		panic(fmt.Sprintf("FleetChanges went back: %d after %d", rev, n.rev))
	}
	for _, e := range evs {
		switch e.Kind {
		case Put:
			n.grants[e.ID] = e.Grant
		case Delete:
			delete(n.grants, e.ID)
		}
	}
	n.changes = append(n.changes, evs...)
	n.rev = rev
	n.notifyLocked()
}

func (n *node) FleetSnapshot(rev int64, live []Grant) {
	n.mu.Lock()
	hook := n.onSnapshot
	defer func() {
		if hook != nil {
			hook()
		}
	}()
	defer n.mu.Unlock()
	n.grants = make(map[string]Grant)
	for _, g := range live {
		n.grants[g.ID] = g
	}
	n.rev = rev
	n.snapshots++
	n.notifyLocked()
}

func (n *node) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// waitFor waits until cond holds on the node's grants, or fails after
// settle.
func (n *node) waitFor(tb testing.TB, what string, cond func(map[string]Grant) bool) {
	tb.Helper()
	deadline := time.NewTimer(settle)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		ok := cond(n.grants)
		ch := n.changed
		have := len(n.grants)
		n.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("after %s: %s did not happen (node holds %d grants)", settle, what, have)
		}
	}
}

func (n *node) has(ids ...string) func(map[string]Grant) bool {
	return func(m map[string]Grant) bool {
		for _, id := range ids {
			if _, ok := m[id]; !ok {
				return false
			}
		}
		return true
	}
}

func (n *node) lacks(ids ...string) func(map[string]Grant) bool {
	return func(m map[string]Grant) bool {
		for _, id := range ids {
			if _, ok := m[id]; ok {
				return false
			}
		}
		return true
	}
}

func (n *node) snapshotCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.snapshots
}

var addrSeq atomic.Uint32

// testGrant is a grant from a fresh source address, lasting d.
func testGrant(d time.Duration) Grant {
	n := addrSeq.Add(1)
	return Grant{
		ID:       journal.NewID(),
		Door:     "ssh",
		Source:   netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}),
		Open:     []knock.Port{{Num: 22, Proto: knock.TCP}},
		Deadline: time.Now().Add(d).UTC(),
	}
}

// member is a Fleet plus its node, running its watcher until cleanup.
type member struct {
	*Fleet
	node *node
}

func testLogger(tb testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: tbWriter{tb}})
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

func config(group, name string, endpoints []string) Config {
	return Config{Endpoints: endpoints, Group: group, Node: name}
}

// newFleet makes a Fleet that does not watch.
func newFleet(tb testing.TB, cfg Config) *Fleet {
	tb.Helper()
	f, err := New(cfg, Options{Logger: testLogger(tb, cfg.Node)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// startMember makes a Fleet whose watcher runs (resuming from rev)
// until cleanup.
func startMember(tb testing.TB, cfg Config, rev int64, opts Options) *member {
	tb.Helper()
	return startNode(tb, cfg, newNode(rev), opts)
}

// startNode is startMember for a node the test made (with its hooks).
func startNode(tb testing.TB, cfg Config, n *node, opts Options) *member {
	tb.Helper()
	opts.Consumer, opts.Store = n, n
	if opts.Logger == nil {
		opts.Logger = testLogger(tb, cfg.Node)
	}
	f, err := New(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		f.Close()
	})
	return &member{Fleet: f, node: n}
}

func startCluster(tb testing.TB, n int) *etcdtest.Cluster {
	tb.Helper()
	return etcdtest.Start(tb, etcdtest.Options{Members: n})
}

// retry calls f (a Publish or a Revoke) until it returns nil or one of
// this package's own errors, within settle: an etcd error means "the call
// may or may not have landed: call again" (Publish's contract), as the
// daemon does. Each retry is logged.
func retry(tb testing.TB, what string, f func() error) error {
	tb.Helper()
	deadline := time.Now().Add(settle)
	for {
		err := f()
		if err == nil || errors.Is(err, ErrRevoked) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExpired) ||
			errors.Is(err, ErrBadValue) || time.Now().After(deadline) {
			return err
		}
		tb.Logf("%s: %v; again", what, err)
		time.Sleep(etcdElection / 4)
	}
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	tb.Cleanup(cancel)
	return ctx
}
