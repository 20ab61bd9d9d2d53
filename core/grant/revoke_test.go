package grant

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/journal"
)

func TestFailingStopIsRetriedUntilItSucceeds(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["close 192.0.2.7"] = 2
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(10 * time.Second)
		if n := r.tr.count("run ssh: close"); n != 1 {
			t.Fatalf("stop ran %d times at the deadline", n)
		}
		gs := r.m.List()
		if len(gs) != 1 || gs[0].State != "stop failing" || gs[0].Attempts != 1 || !strings.Contains(gs[0].LastError, "stop command: exit status 1") {
			t.Fatalf("List = %+v", gs)
		}
		r.advance(time.Second) // first retry after RetryBase
		r.advance(2 * time.Second)
		if n := r.tr.count("run ssh: close"); n != 3 {
			t.Fatalf("stop ran %d times, want 3 (2 failures then success)", n)
		}
		if r.tr.count("journal revoked") != 1 || len(r.m.List()) != 0 {
			t.Fatalf("not recorded as revoked: %q", r.tr.all())
		}
	})
}

// A stop that keeps failing is never given up, its retries are spaced at
// most RetryMax apart, and it is never journaled as revoked.
func TestFailingStopIsNeverGivenUp(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["close 192.0.2.7"] = 1 << 30
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(10 * time.Second)
		// Delays 1, 2, 4, 8, 8, ...: within an hour, 4 + (3600-15)/8 tries.
		r.advance(time.Hour)
		n := r.tr.count("run ssh: close")
		if n < 400 {
			t.Fatalf("stop ran %d times in an hour, want a try at least every %v", n, r.opts.RetryMax)
		}
		if r.tr.count("journal revoked") != 0 {
			t.Fatal("a revocation whose stop never succeeded was journaled")
		}
		if c := strings.Count(r.log.String(), "stop command failed (attempt"); c != n {
			t.Errorf("%d failures logged for %d failed tries", c, n)
		}
		gs := r.m.List()
		if len(gs) != 1 || gs[0].State != "stop failing" || gs[0].Attempts != n {
			t.Fatalf("List = %+v", gs)
		}
		// The admin fixed it by hand and forgets it.
		if err := r.m.Forget(context.Background(), gs[0].ID); err != nil {
			t.Fatal(err)
		}
		r.settle()
		if r.tr.count("journal forgotten") != 1 || len(r.m.List()) != 0 {
			t.Fatalf("not forgotten: %q", r.tr.all()[len(r.tr.all())-3:])
		}
		r.advance(time.Hour)
		if r.tr.count("run ssh: close") != n {
			t.Error("stop ran after the grant was forgotten")
		}
	})
}

func TestForgetOnlyEndsFailingStops(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		id := r.m.List()[0].ID
		if err := r.m.Forget(context.Background(), id); !errors.Is(err, ErrNotFailing) {
			t.Errorf("Forget of an active grant: %v", err)
		}
		if err := r.m.Forget(context.Background(), "nope"); err == nil {
			t.Error("Forget of no grant")
		}
		r.advance(10 * time.Second)
		if r.tr.count("run ssh: close") != 1 || r.tr.count("journal revoked") != 1 {
			t.Errorf("trace %q", r.tr.all())
		}
	})
}

// `sesame revoke` of a grant whose stop is failing tries it again now.
func TestRevokeRetriesAFailingStopNow(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["close 192.0.2.7"] = 4
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(10*time.Second + 7*time.Second) // tries at +10, +11, +13, +17
		if n := r.tr.count("run ssh: close"); n != 4 {
			t.Fatalf("%d tries", n)
		}
		// The next try would be at +25s.
		if ids, err := r.m.Revoke("192.0.2.7"); err != nil || len(ids) != 1 {
			t.Fatalf("Revoke = %v %v", ids, err)
		}
		r.settle()
		if n := r.tr.count("run ssh: close"); n != 5 || len(r.m.List()) != 0 {
			t.Fatalf("not retried at once: %d tries, %+v", n, r.m.List())
		}
	})
}

// A failing native revoke is retried like a stop command.
func TestFailingNativeRevokeIsRetried(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.fw.failures = 3
		r.m.Open(nativeDoor(), src4, time.Now())
		r.advance(30 * time.Second)
		if st := r.m.List(); len(st) != 1 || st[0].State != "stop failing" {
			t.Fatalf("List = %+v", st)
		}
		if len(r.m.Native()) != 0 {
			t.Error("a grant being revoked is still wanted in the firewall")
		}
		r.advance(time.Minute)
		if r.tr.count("fw revoke 192.0.2.7") != 4 || r.tr.count("journal revoked") != 1 {
			t.Fatalf("trace %q", r.tr.all())
		}
	})
}

// A stop that keeps failing across a restart is retried by the new run:
// the journal still holds the grant, with its revoke started.
func TestFailingStopAcrossRestart(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["close g"] = 3
		now := time.Now()
		g := rec("g", now.Add(-time.Minute), now.Add(-time.Second))
		g.Source = src4
		r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
		r.advance(2 * time.Second) // tries at +0 and +1
		r.restart()
		g.RevokeStarted = true
		r.m.Resume([]journal.Record{g}, []*config.Door{cmdDoor()})
		r.advance(3 * time.Second) // +2 (fails: status 1 in its marker, so not taken as done), +3 succeeds
		if n := r.tr.count("run ssh: close g"); n != 4 || r.tr.count("journal revoked") != 1 {
			t.Fatalf("trace %q", r.tr.all())
		}
	})
}

// With the journal unable to record the revocation (a full disk), the
// grant stays known as revoked in memory and the record is retried: the
// stop never runs twice while the daemon lives.
func TestUnrecordedRevocationIsRetried(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.j.failRevoked = 1
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(10 * time.Second)
		gs := r.m.List()
		if len(gs) != 1 || gs[0].State != "revoked, not journaled" || !strings.Contains(gs[0].LastError, "no space left") {
			t.Fatalf("List = %+v", gs)
		}
		if got := r.m.Open(cmdDoor(), src4, time.Now()); got != Granted {
			t.Errorf("a knock after the stop ran = %v, want a new grant", got)
		}
		// That grant's journal write worked: the revocation is retried
		// at once, not after its back-off.
		r.settle()
		if r.tr.count("journal revoked at +10s") != 1 {
			t.Errorf("revocation not retried when the journal worked again: %q", r.tr.all())
		}
		r.advance(10 * time.Second)
		if r.tr.count("run ssh: close") != 2 {
			t.Errorf("stops: %q", r.tr.all())
		}
		if r.tr.count("journal revoked") != 2 || len(r.m.List()) != 0 {
			t.Fatalf("trace %q, grants %+v", r.tr.all(), r.m.List())
		}
	})
}

// After a reload changed a door's commands, a re-knock by a holder ends
// the old grant with the old stop, then grants with the new commands.
func TestReknockAfterReloadGetsTheNewDoor(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(time.Second)
		v2 := cmdDoor()
		v2.Start.Text, v2.Stop.Text, v2.CmdTimeout = "open2 %IP%", "close2 %IP%", 20*time.Second
		if got := r.m.Open(v2, src4, time.Now()); got != Granted {
			t.Fatalf("re-knock = %v", got)
		}
		r.advance(20 * time.Second)
		want := []string{
			`journal grant ssh 192.0.2.7 stop="close 192.0.2.7" open=[] deadline=+10s pending=true`,
			"run ssh: open 192.0.2.7",
			"journal started at +0s deadline +10s",
			"journal revoking",
			"run ssh: close 192.0.2.7",
			"journal revoked at +1s",
			`journal grant ssh 192.0.2.7 stop="close2 192.0.2.7" open=[] deadline=+21s pending=true`,
			"run ssh: open2 192.0.2.7",
			"journal started at +1s deadline +21s",
			"journal revoking",
			"run ssh: close2 192.0.2.7",
			"journal revoked at +21s",
		}
		r.expect(want...)
		// Only the timeout changed: the grant is kept and extended by it.
		r.tr.lines = nil
		r.m.Open(v2, src4, time.Now())
		r.advance(time.Second)
		v3 := *v2
		v3.CmdTimeout = 60 * time.Second
		if got := r.m.Open(&v3, src4, time.Now()); got != Extended {
			t.Fatalf("re-knock with a new timeout = %v", got)
		}
		r.advance(61 * time.Second)
		if r.tr.count("run ssh: open2") != 1 || r.tr.count("run ssh: close2") != 1 || r.tr.count("journal extend +1m22s") != 1 {
			t.Errorf("trace %q", r.tr.all())
		}
	})
}

// `sesame revoke` takes a unique prefix of a grant id, as git takes a
// short hash; an ambiguous one names the grants it could mean.
func TestRevokeByIDPrefix(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		other := netip.MustParseAddr("192.0.2.8")
		r.m.Open(cmdDoor(), src4, time.Now())
		r.m.Open(cmdDoor(), other, time.Now())
		r.settle()
		gs := r.m.List()
		if len(gs) != 2 {
			t.Fatalf("List = %+v", gs)
		}
		a, b := gs[0].ID, gs[1].ID
		common := 0
		for common < len(a) && a[common] == b[common] {
			common++
		}
		if common < MinIDPrefix {
			t.Fatalf("ids %s and %s share %d characters; the test needs %d", a, b, common, MinIDPrefix)
		}
		_, err := r.m.Revoke(a[:common])
		if !errors.Is(err, ErrAmbiguousID) || !strings.Contains(err.Error(), a+" (ssh, ") || !strings.Contains(err.Error(), b+" (ssh, ") {
			t.Fatalf("ambiguous prefix: %v", err)
		}
		if _, err := r.m.Revoke(a[:MinIDPrefix-1]); err == nil || !strings.Contains(err.Error(), "at least 4 characters") {
			t.Errorf("too short a prefix: %v", err)
		}
		if _, err := r.m.Revoke("ffffffffffff"); err == nil || errors.Is(err, ErrAmbiguousID) {
			t.Errorf("prefix of nothing: %v", err)
		}
		ids, err := r.m.Revoke(a[:common+1])
		if err != nil || len(ids) != 1 || ids[0] != a {
			t.Fatalf("unique prefix: %v %v", ids, err)
		}
		r.settle()
		if gs := r.m.List(); len(gs) != 1 || gs[0].ID != b {
			t.Fatalf("after revoking %s: %+v", a, gs)
		}
	})
}

// Forget takes a prefix too.
func TestForgetByIDPrefix(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["close 192.0.2.7"] = 1 << 30
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(10 * time.Second)
		gs := r.m.List()
		if len(gs) != 1 || gs[0].State != "stop failing" {
			t.Fatalf("List = %+v", gs)
		}
		if err := r.m.Forget(context.Background(), gs[0].ID[:8]); err != nil {
			t.Fatal(err)
		}
		r.settle()
		if r.tr.count("journal forgotten") != 1 || len(r.m.List()) != 0 {
			t.Fatalf("not forgotten: %+v", r.m.List())
		}
	})
}
