package daemon

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/fleet"
)

// fakeGroup records the publisher's calls, with their (bubble) times,
// and fails the first failPublish Publish calls as etcd would.
type fakeGroup struct {
	mu          sync.Mutex
	t0          time.Time
	failPublish int
	revoked     error // what Publish returns once failPublish is spent (nil: success)
	calls       []string
	at          []time.Duration
}

func (f *fakeGroup) note(s string) {
	f.calls = append(f.calls, s)
	f.at = append(f.at, time.Since(f.t0))
}

func (f *fakeGroup) Publish(ctx context.Context, g fleet.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note("publish " + g.ID + " until +" + g.Deadline.Sub(f.t0).String())
	if f.failPublish > 0 {
		f.failPublish--
		return errors.New("etcdserver: request timed out")
	}
	return f.revoked
}

func (f *fakeGroup) Revoke(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note("revoke " + id)
	return nil
}

func (f *fakeGroup) trace() ([]string, []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]time.Duration(nil), f.at...)
}

// here records what the publisher asked of the journal and the grant
// manager.
type here struct {
	mu                   sync.Mutex
	confirmed, revokedIt []string
}

func (h *here) get() (confirmed, revoked []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.confirmed...), append([]string(nil), h.revokedIt...)
}

// testPublisher runs a publisher against to until the test ends; the
// journal and the grant manager are replaced by a recorder.
func testPublisher(t *testing.T, to publishTarget) (*publisher, *here) {
	m := &fleetMember{log: hclog.NewNullLogger(), now: time.Now, group: "g"}
	h := &here{}
	p := &publisher{m: m, jobs: make(map[string]*pubJob), wake: make(chan struct{}, 1), to: to,
		confirm: func(id string) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.confirmed = append(h.confirmed, id)
			return nil
		},
		revokeHere: func(id string) bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.revokedIt = append(h.revokedIt, id)
			return true
		}}
	m.pub = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.loop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, h
}

// While etcd fails, a grant is published again with backoff (250 ms,
// doubling), confirmed in the journal once it lands, then extended with
// its new deadline, then revoked; each wish is one call once etcd
// answers.
func TestPublisherRetriesThenFollowsTheLatestWish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGroup{t0: time.Now(), failPublish: 3}
		p, h := testPublisher(t, g)
		p.publish(fleet.Grant{ID: "g1", Deadline: g.t0.Add(time.Minute)})
		time.Sleep(5 * time.Second)
		if n := p.pending(); n != 0 {
			t.Errorf("%d grants pending after etcd answered, want 0", n)
		}
		p.extend("g1", g.t0.Add(2*time.Minute))
		time.Sleep(time.Second)
		p.revoke("g1")
		time.Sleep(time.Second)
		calls, at := g.trace()
		want := []string{"publish g1 until +1m0s", "publish g1 until +1m0s", "publish g1 until +1m0s", "publish g1 until +1m0s",
			"publish g1 until +2m0s", "revoke g1"}
		wantAt := []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond, 5 * time.Second, 6 * time.Second}
		if len(calls) != len(want) {
			t.Fatalf("calls %q at %v, want %q at %v", calls, at, want, wantAt)
		}
		for i := range want {
			if calls[i] != want[i] || at[i] != wantAt[i] {
				t.Errorf("call %d: %q at %v, want %q at %v", i, calls[i], at[i], want[i], wantAt[i])
			}
		}
		if confirmed, _ := h.get(); len(confirmed) != 1 {
			t.Errorf("journal confirmations %v, want one for g1", confirmed)
		}
		if jobCount(p) != 0 {
			t.Errorf("jobs left after the revocation: %d", jobCount(p))
		}
	})
}

// A grant etcd never takes is given up at its deadline plus the lease's
// slack (by then it is gone from every node), so the publisher's work is
// bounded by the grants' lives.
func TestPublisherGivesUpAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGroup{t0: time.Now(), failPublish: 1 << 30}
		p, h := testPublisher(t, g)
		p.publish(fleet.Grant{ID: "g1", Deadline: g.t0.Add(10 * time.Second)})
		time.Sleep(10*time.Second + fleet.DefaultLeaseSlack + fleet.DefaultBackoffMax)
		calls, at := g.trace()
		time.Sleep(time.Hour)
		if again, _ := g.trace(); len(again) != len(calls) {
			t.Errorf("still calling after the deadline: %d calls, then %d", len(calls), len(again))
		}
		if last := at[len(at)-1]; last > 10*time.Second+fleet.DefaultLeaseSlack+fleet.DefaultBackoffMax {
			t.Errorf("last call at %v", last)
		}
		if confirmed, _ := h.get(); len(confirmed) != 0 || jobCount(p) != 0 {
			t.Errorf("confirmed %v, %d jobs; want none", confirmed, jobCount(p))
		}
	})
}

// A grant revoked in the group while this node could not publish it
// (ErrRevoked) ends here, and is not published again.
func TestPublisherRevokedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGroup{t0: time.Now(), revoked: fleet.ErrRevoked}
		p, h := testPublisher(t, g)
		p.publish(fleet.Grant{ID: "g1", Deadline: g.t0.Add(time.Minute)})
		time.Sleep(time.Minute)
		calls, _ := g.trace()
		confirmed, revoked := h.get()
		if len(calls) != 1 || len(revoked) != 1 || len(confirmed) != 0 {
			t.Errorf("calls %q, revoked here %v, confirmed %v; want one call, g1 revoked here, nothing confirmed", calls, revoked, confirmed)
		}
	})
}

func jobCount(p *publisher) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.jobs)
}
