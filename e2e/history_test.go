package e2e

import (
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/journal"
)

// testRand returns a random source seeded from SESAME_TEST_SEED when set,
// else from the clock, and logs the seed so a failure can be replayed.
func testRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("SESAME_TEST_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SESAME_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with SESAME_TEST_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// history is what a daemon journaled about one grant: the test's ground
// truth for deadlines, since a log line can be lost to a kill while the
// journal record it follows was already durable.
type history struct {
	id       string
	src      string
	start    time.Time // the knock
	deadline time.Time // the last deadline journaled (grant, started, extend)
	started  bool      // the end of its start command was journaled
	revoked  bool
	forgot   bool
	revokeAt time.Time
}

// grantHistory reads the journal in stateDir and returns, per source,
// its grants in the order they were made.
func grantHistory(t *testing.T, stateDir string) map[string][]*history {
	t.Helper()
	entries, err := journal.ReadLog(stateDir)
	if err != nil {
		t.Fatalf("reading the journal: %v", err)
	}
	byID := map[string]*history{}
	out := map[string][]*history{}
	for _, e := range entries {
		h := byID[e.ID]
		if e.Kind == journal.KindGrant {
			h = &history{id: e.ID, src: e.Grant.Source.String(), start: e.Grant.Start, deadline: e.Grant.Deadline}
			byID[e.ID] = h
			out[h.src] = append(out[h.src], h)
			continue
		}
		if h == nil {
			t.Errorf("journal: %s record for unknown grant %s", e.Kind, e.ID)
			continue
		}
		switch e.Kind {
		case journal.KindExtend:
			h.deadline = e.Deadline
		case journal.KindStarted:
			h.started, h.deadline = true, e.Deadline
		case journal.KindRevoked:
			h.revoked, h.forgot, h.revokeAt = true, e.Forgotten, e.At
		}
	}
	return out
}

// resumed returns when the daemon began resuming journaled grants (the
// time of its first "resuming grant" line), or launched when it logged
// none.
func (p *proc) resumed(launched time.Time) time.Time {
	for _, l := range strings.Split(p.out.String(), "\n") {
		if !strings.Contains(l, ": resuming grant ") {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		if at, err := time.Parse(time.RFC3339Nano, f[0]); err == nil && at.After(launched) {
			return at
		}
		break
	}
	return launched
}

// runs are the intervals, in order, during which a daemon was running:
// lateness is measured only against them, since no daemon can act while
// none runs.
type runs []struct{ from, to time.Time }

func (r *runs) add(from, to time.Time) { *r = append(*r, struct{ from, to time.Time }{from, to}) }

// lateness measures how long daemons took to act on a deadline, one
// daemon's life at a time: a daemon killed before it acted starts over,
// and its successor is measured from its own start. It returns the
// longest time, in one run, from the deadline (or the run's start) until
// the action at did began or the run ended without it.
func (r runs) lateness(deadline, did time.Time) time.Duration {
	var worst time.Duration
	for _, iv := range r {
		from := iv.from
		if deadline.After(from) {
			from = deadline
		}
		if !iv.to.After(from) {
			continue // ended before the deadline
		}
		if !did.After(iv.to) {
			return max(worst, did.Sub(from))
		}
		worst = max(worst, iv.to.Sub(from))
	}
	return worst
}
