package grant

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// recSharer shares grants of the doors in doors, writing each call into
// the trace so the tests see it in order with the journal's records.
type recSharer struct {
	tr    *trace
	doors map[string]bool
}

func (s *recSharer) Share(r *Request) string {
	if s.doors[r.Name] {
		return r.Name
	}
	return ""
}
func (s *recSharer) Granted(g Grant) {
	s.tr.add("share granted %s %s as %s until %s", g.Door, g.Source, g.Shared, s.tr.rel(g.Deadline))
}
func (s *recSharer) Extended(id string, dl time.Time) { s.tr.add("share extended %s", s.tr.rel(dl)) }
func (s *recSharer) Ended(id, why string)             { s.tr.add("share ended %s", why) }

func sshDoor() *config.Door {
	return &config.Door{Name: "ssh", CmdTimeout: 30 * time.Second, Open: []knock.Port{tcp22}}
}

// fleetRequest is a grant of door ssh received from node a.
func fleetRequest(id string, deadline time.Time) Request {
	return Request{Name: "ssh", Source: src4, Ports: []knock.Port{tcp22}, Timeout: 30 * time.Second,
		ID: id, Deadline: deadline, Origin: "a"}
}

// A grant of a shared door is journaled first, shared after; its
// extensions are shared after the journal took them, as is its end.
// A grant of another door is not shared.
func TestSharerSeesJournaledChanges(t *testing.T) {
	var sh *recSharer
	bubble(t, func(t *testing.T, r *rig) {
		sh.tr = r.tr
		r.m.Open(sshDoor(), src4, time.Now())
		r.settle()
		r.advance(10 * time.Second)
		r.m.Open(sshDoor(), src4, time.Now()) // deadline +40s
		r.settle()
		other := sshDoor()
		other.Name, other.CmdTimeout = "web", 50*time.Second
		r.m.Open(other, src6, time.Now())
		r.advance(time.Minute)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="" open=[22:tcp] deadline=+30s pending=false`,
			"share granted ssh 192.0.2.7 as ssh until +30s",
			"fw grant 192.0.2.7 [22:tcp] until +30s",
			"fw grant 192.0.2.7 [22:tcp] until +40s",
			"journal extend +40s",
			"share extended +40s",
			`journal grant web 2001:db8::7 stop="" open=[22:tcp] deadline=+1m0s pending=false`,
			"fw grant 2001:db8::7 [22:tcp] until +1m0s",
			"fw revoke 192.0.2.7",
			"journal revoked at +40s",
			"share ended expire",
			"fw revoke 2001:db8::7",
			"journal revoked at +1m0s",
		)
		gs := r.m.List()
		if len(gs) != 0 {
			t.Fatalf("left %+v", gs)
		}
	}, func(o *Options) {
		sh = &recSharer{doors: map[string]bool{"ssh": true}}
		o.Sharer = sh
	})
}

// A grant received from the fleet for the same door and source as a
// local grant is a grant of its own, by its id: the local re-knock
// extends only the local grant, the fleet's extension only the fleet's,
// and each ends at its own deadline.
func TestFleetGrantKeyedByID(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		t0 := time.Now()
		if out := r.m.Open(sshDoor(), src4, t0); out != Granted {
			t.Fatalf("local: %v", out)
		}
		id := journal.NewID()
		if out := r.m.Grant(fleetRequest(id, t0.Add(20*time.Second)), t0); out != Granted {
			t.Fatalf("fleet: %v", out)
		}
		r.settle()
		if n := len(r.m.List()); n != 2 {
			t.Fatalf("%d grants, want 2 (local and fleet)", n)
		}
		r.advance(5 * time.Second)
		if out := r.m.Open(sshDoor(), src4, time.Now()); out != Extended { // local until +35s
			t.Fatalf("re-knock: %v", out)
		}
		if out := r.m.Grant(fleetRequest(id, t0.Add(25*time.Second)), time.Now()); out != Extended {
			t.Fatalf("fleet extension: %v", out)
		}
		if out := r.m.Grant(fleetRequest(id, t0.Add(22*time.Second)), time.Now()); out != Extended {
			t.Fatalf("earlier fleet deadline: %v", out)
		}
		r.settle()
		var fleet, local Grant
		for _, g := range r.m.List() {
			if g.Origin == "a" {
				fleet = g
			} else {
				local = g
			}
		}
		if fleet.ID != id || !fleet.Deadline.Equal(t0.Add(25*time.Second)) {
			t.Fatalf("fleet grant %+v, want %s until +25s", fleet, id)
		}
		if !local.Deadline.Equal(t0.Add(35 * time.Second)) {
			t.Fatalf("local grant %+v, want until +35s", local)
		}
		r.advance(25*time.Second - 5*time.Second)
		gs := r.m.List()
		if len(gs) != 1 || gs[0].ID != local.ID {
			t.Fatalf("after +25s: %+v, want only the local grant", gs)
		}
		r.advance(10 * time.Second)
		if gs := r.m.List(); len(gs) != 0 {
			t.Fatalf("after +35s: %+v", gs)
		}
		if log := r.log.String(); !strings.Contains(log, "origin=a") {
			t.Errorf("the fleet grant's lines do not name its origin:\n%s", log)
		}
	})
}

// A fleet grant of a door with commands runs the door's own start and
// stop, and ends at the origin's deadline, not the start command's end
// plus the timeout.
func TestFleetGrantKeepsItsDeadline(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.duration = 3 * time.Second
		t0 := time.Now()
		req := Request{Name: "ssh", Source: src4, Timeout: 10 * time.Second, StartCmd: "open 192.0.2.7", StopCmd: "close 192.0.2.7",
			ID: journal.NewID(), Deadline: t0.Add(8 * time.Second), Origin: "a"}
		if out := r.m.Grant(req, t0); out != Granted {
			t.Fatalf("%v", out)
		}
		r.advance(20 * time.Second)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="close 192.0.2.7" open=[] deadline=+8s pending=true`,
			"run ssh: open 192.0.2.7",
			"journal started at +3s deadline +8s",
			"journal revoking",
			"run ssh: close 192.0.2.7",
			"journal revoked at +11s",
		)
	})
}

// A fleet deadline further than the door's timeout (the origin's clock
// is ahead, or its door's timeout is longer) is cut back and logged; an
// expired one, or one without id or origin, is ignored.
func TestFleetGrantBounds(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		t0 := time.Now()
		if out := r.m.Grant(fleetRequest(journal.NewID(), t0.Add(time.Hour)), t0); out != Granted {
			t.Fatalf("%v", out)
		}
		r.settle()
		if gs := r.m.List(); len(gs) != 1 || !gs[0].Deadline.Equal(t0.Add(30*time.Second)) {
			t.Fatalf("%+v, want the deadline cut to +30s", gs)
		}
		if !strings.Contains(r.log.String(), "event=clamp") {
			t.Errorf("the cut was not logged:\n%s", r.log.String())
		}
		if out := r.m.Grant(fleetRequest(journal.NewID(), t0.Add(-time.Second)), t0); out != Ignored {
			t.Errorf("expired: %v", out)
		}
		bad := fleetRequest("not an id!", t0.Add(time.Second))
		if out := r.m.Grant(bad, t0); out != Ignored {
			t.Errorf("bad id: %v", out)
		}
		noOrigin := fleetRequest(journal.NewID(), t0.Add(time.Second))
		noOrigin.Origin = ""
		if out := r.m.Grant(noOrigin, t0); out != Ignored {
			t.Errorf("no origin: %v", out)
		}
	})
}

// Journaled returns once the grant's record is durable, and at once for
// a grant the manager does not hold.
func TestJournaledWaitsForTheRecord(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		block := make(chan struct{})
		r.j.blockGrant = block
		id := journal.NewID()
		r.m.Grant(fleetRequest(id, time.Now().Add(10*time.Second)), time.Now())
		done := make(chan error, 1)
		go func() { done <- r.m.Journaled(context.Background(), id) }()
		r.settle()
		select {
		case err := <-done:
			t.Fatalf("Journaled returned before the record was written: %v", err)
		default:
		}
		close(block)
		r.settle()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r.tr.count("journal grant") != 1 {
			t.Fatal("no journal record")
		}
		if err := r.m.Journaled(context.Background(), "nope"); err != nil {
			t.Fatal(err)
		}
	})
}

// RevokeID ends one grant by its id when match accepts it, with the
// reason handed to the Sharer; it refuses an unknown id, a grant match
// refuses (match sees the grant's deadline and origin) and a grant
// already ending.
func TestRevokeID(t *testing.T) {
	var sh *recSharer
	bubble(t, func(t *testing.T, r *rig) {
		sh.tr = r.tr
		t0 := time.Now()
		fid := journal.NewID()
		if out := r.m.Grant(fleetRequest(fid, t0.Add(20*time.Second)), t0); out != Granted {
			t.Fatalf("fleet: %v", out)
		}
		if out := r.m.Open(sshDoor(), src4, t0); out != Granted {
			t.Fatalf("local: %v", out)
		}
		r.settle()
		var local string
		for _, g := range r.m.List() {
			if g.Origin == "" {
				local = g.ID
			}
		}
		if r.m.RevokeID(journal.NewID(), "fleet", nil) {
			t.Error("revoked an unknown id")
		}
		var seen Grant
		if r.m.RevokeID(fid, "fleet", func(g Grant) bool { seen = g; return false }) {
			t.Error("revoked a grant match refused")
		}
		if seen.ID != fid || seen.Origin != "a" || !seen.Deadline.Equal(t0.Add(20*time.Second)) {
			t.Errorf("match saw %+v, want %s from a until +20s", seen, fid)
		}
		if !r.m.RevokeID(local, "fleet", nil) {
			t.Fatal("did not revoke the local grant")
		}
		if r.m.RevokeID(local, "fleet", nil) {
			t.Error("revoked a grant already ending")
		}
		r.settle()
		gs := r.m.List()
		if len(gs) != 1 || gs[0].ID != fid {
			t.Fatalf("left %+v, want only the fleet grant", gs)
		}
		if n := r.tr.count("share ended fleet"); n != 1 {
			t.Errorf("the Sharer was told %d times that a grant ended by the fleet, want 1:\n%s", n, strings.Join(r.tr.all(), "\n"))
		}
	}, func(o *Options) {
		sh = &recSharer{doors: map[string]bool{"ssh": true}}
		o.Sharer = sh
	})
}
