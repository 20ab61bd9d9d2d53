package journal

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// op is one journal call in a table-driven sequence.
type op struct {
	kind string // grant, extend, started, revoking, revoked, forgotten
	i    int    // record number (rec(i))
	at   time.Time
}

// apply runs ops against j and against a model, returning the model's
// expected Pending.
func runOps(t *testing.T, j *Journal, ops []op) []Record {
	t.Helper()
	model := map[string]*Record{}
	var order []string
	for _, o := range ops {
		r := rec(o.i)
		var err error
		switch o.kind {
		case "grant":
			err = j.Grant(r)
			m := r
			model[r.ID] = &m
			order = append(order, r.ID)
		case "extend":
			err = j.Extend(r.ID, o.at)
			model[r.ID].Deadline = o.at.UTC()
		case "started":
			err = j.Started(r.ID, o.at.Add(-30*time.Second), o.at)
			model[r.ID].Deadline = o.at.UTC()
			model[r.ID].StartPending = false
		case "forgotten":
			err = j.Forgotten(r.ID, o.at)
			delete(model, r.ID)
		case "revoking":
			err = j.Revoking(r.ID)
			model[r.ID].RevokeStarted = true
		case "revoked":
			err = j.Revoked(r.ID, o.at)
			delete(model, r.ID)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.kind, r.ID, err)
		}
	}
	var want []Record
	for _, id := range order {
		if m, ok := model[id]; ok {
			want = append(want, *m)
		}
	}
	// rec(i) starts grow with i, but ops may grant out of order.
	sortByStart(want)
	return want
}

func sortByStart(rs []Record) {
	for i := 1; i < len(rs); i++ {
		for k := i; k > 0 && rs[k].Start.Before(rs[k-1].Start); k-- {
			rs[k], rs[k-1] = rs[k-1], rs[k]
		}
	}
}

func TestSequences(t *testing.T) {
	later := t0.Add(time.Hour)
	tests := []struct {
		name string
		ops  []op
	}{
		{"empty", nil},
		{"one grant", []op{{kind: "grant", i: 1}}},
		{"grant and revoke", []op{{kind: "grant", i: 1}, {kind: "revoking", i: 1}, {kind: "revoked", i: 1, at: later}}},
		{"extend twice", []op{{kind: "grant", i: 2}, {kind: "extend", i: 2, at: later}, {kind: "extend", i: 2, at: later.Add(time.Minute)}}},
		{"revoke started, not finished", []op{{kind: "grant", i: 3}, {kind: "grant", i: 4}, {kind: "revoking", i: 3}}},
		{"revoked without revoking", []op{{kind: "grant", i: 3}, {kind: "grant", i: 4}, {kind: "revoked", i: 4, at: later}}},
		{"start order, not grant order", []op{{kind: "grant", i: 9}, {kind: "grant", i: 2}, {kind: "grant", i: 5}}},
		{"extend then revoke then regrant others", []op{
			{kind: "grant", i: 1}, {kind: "grant", i: 2}, {kind: "extend", i: 1, at: later},
			{kind: "revoking", i: 2}, {kind: "revoked", i: 2, at: later}, {kind: "grant", i: 3}, {kind: "extend", i: 3, at: later},
		}},
		{"start finished", []op{{kind: "grant", i: 4}, {kind: "grant", i: 8}, {kind: "started", i: 4, at: later}}},
		{"start finished then extended", []op{{kind: "grant", i: 4}, {kind: "started", i: 4, at: later}, {kind: "extend", i: 4, at: later.Add(time.Minute)}}},
		{"stop failing then forgotten", []op{{kind: "grant", i: 2}, {kind: "grant", i: 4}, {kind: "revoking", i: 2}, {kind: "forgotten", i: 2, at: later}}},
		{"local-time deadline is stored as UTC", []op{{kind: "grant", i: 6}, {kind: "extend", i: 6, at: later.In(time.FixedZone("X", 3600))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j := mustOpen(t, dir)
			want := runOps(t, j, tt.ops)
			samePending(t, "live", j.Pending(), want)
			rp, err := ReadPending(dir)
			if err != nil {
				t.Fatal(err)
			}
			samePending(t, "ReadPending", rp, want)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j2 := mustOpen(t, dir)
			samePending(t, "reopened", j2.Pending(), want)
		})
	}
}

func TestRoundTripFields(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	r := Record{
		ID:       NewID(),
		Door:     "ssh door [ü]",
		Source:   netip.MustParseAddr("fe80::1%sesame0"),
		StopCmd:  "iptables -D INPUT -s %IP% -j ACCEPT; echo 'quoted \"x\"'\n second line",
		Open:     []knock.Port{{Num: 22, Proto: knock.TCP}, {Num: 53, Proto: knock.UDP}},
		Backend:  "iptables",
		Start:    time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
		Deadline: time.Date(2026, 1, 2, 3, 4, 35, 999999999, time.FixedZone("CET", 3600)),
		Timeout:  1500 * time.Millisecond, StartPending: true,
	}
	mustGrant(t, j, r)
	j.Close()
	got := mustOpen(t, dir).Pending()
	if len(got) != 1 {
		t.Fatalf("got %d records", len(got))
	}
	g := got[0]
	if g.ID != r.ID || g.Door != r.Door || g.Source != r.Source || g.StopCmd != r.StopCmd || g.Backend != r.Backend ||
		len(g.Open) != 2 || g.Open[0] != r.Open[0] || g.Open[1] != r.Open[1] ||
		!g.Start.Equal(r.Start) || !g.Deadline.Equal(r.Deadline) || g.RevokeStarted ||
		g.Timeout != r.Timeout || !g.StartPending {
		t.Fatalf("round trip:\n got  %+v\n want %+v", g, r)
	}
}

func TestPendingIsACopy(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	mustGrant(t, j, rec(1))
	p := j.Pending()
	p[0].Open[0].Num = 1
	p[0].Door = "changed"
	if q := j.Pending(); q[0].Open[0].Num != 22 || q[0].Door != "ssh" {
		t.Fatalf("Pending shares memory with the journal: %+v", q[0])
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !ValidID(id) || len(id) != 32 {
			t.Fatalf("NewID() = %q: not a valid 32-character id", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		if id[:16] < prev[:min(len(prev), 16)] {
			t.Fatalf("NewID() went back in time: %q after %q", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestRefusals(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	mustGrant(t, j, rec(1))
	bad := func(mut func(*Record)) Record { r := rec(2); mut(&r); return r }
	tests := []struct {
		name string
		call func() error
		want error  // errors.Is target, or nil to only check the message
		msg  string // substring of the message
	}{
		{"duplicate id", func() error { return j.Grant(rec(1)) }, ErrDuplicate, "journal: grant g0001"},
		{"empty id", func() error { return j.Grant(bad(func(r *Record) { r.ID = "" })) }, nil, "bad id"},
		{"long id", func() error { return j.Grant(bad(func(r *Record) { r.ID = strings.Repeat("a", 33) })) }, nil, "bad id"},
		{"id with slash", func() error { return j.Grant(bad(func(r *Record) { r.ID = "a/b" })) }, nil, "bad id"},
		{"no door", func() error { return j.Grant(bad(func(r *Record) { r.Door = "" })) }, nil, "bad door"},
		{"no source", func() error { return j.Grant(bad(func(r *Record) { r.Source = netip.Addr{} })) }, nil, "no source"},
		{"port 0", func() error {
			return j.Grant(bad(func(r *Record) { r.Open = []knock.Port{{Num: 0, Proto: knock.TCP}} }))
		}, nil, "bad port"},
		{"bad proto", func() error {
			return j.Grant(bad(func(r *Record) { r.Open = []knock.Port{{Num: 1, Proto: 1}} }))
		}, nil, "bad port"},
		{"no deadline", func() error { return j.Grant(bad(func(r *Record) { r.Deadline = time.Time{} })) }, nil, "missing start"},
		{"invalid utf-8 stop", func() error { return j.Grant(bad(func(r *Record) { r.StopCmd = "\xff" })) }, nil, "UTF-8"},
		{"huge stop", func() error {
			return j.Grant(bad(func(r *Record) { r.StopCmd = strings.Repeat("x", MaxPayload) }))
		}, nil, "byte limit"},
		{"extend unknown", func() error { return j.Extend("nope", t0) }, ErrUnknownGrant, "journal: extend nope"},
		{"extend zero", func() error { return j.Extend("g0001", time.Time{}) }, nil, "zero deadline"},
		{"revoking unknown", func() error { return j.Revoking("nope") }, ErrUnknownGrant, "journal: revoking nope"},
		{"revoked unknown", func() error { return j.Revoked("nope", t0) }, ErrUnknownGrant, "journal: revoked nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v is not %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
	// None of the refusals reached the disk.
	samePending(t, "after refusals", j.Pending(), []Record{rec(1)})
	if offs := frameOffsets(t, readLog(t, j.dir)); len(offs) != 1 {
		t.Fatalf("log holds %d frames, want 1", len(offs))
	}
}

func TestLockRefusesSecondOpen(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	_, err := Open(dir, nil)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "pid") {
		t.Errorf("second Open error %q does not name the holder's pid", err)
	}
	// ReadPending needs no lock.
	mustGrant(t, j, rec(1))
	if rp, err := ReadPending(dir); err != nil || len(rp) != 1 {
		t.Fatalf("ReadPending while locked: %v, %v", rp, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	j2.Close()
}

func TestCloseTwiceAndAfterClose(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	mustGrant(t, j, rec(1))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"grant":    j.Grant(rec(2)),
		"extend":   j.Extend("g0001", t0),
		"revoking": j.Revoking("g0001"),
		"revoked":  j.Revoked("g0001", t0),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if p := j.Pending(); p != nil {
		t.Errorf("Pending after Close = %v", p)
	}
}

func TestReadPendingMissing(t *testing.T) {
	_, err := ReadPending(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("ReadPending on an empty dir: %v", err)
	}
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := t.TempDir() + "/state/sesame"
	mustOpen(t, dir)
	for _, p := range []string{dir, logPath(dir)} {
		st, err := statMode(p)
		if err != nil {
			t.Fatal(err)
		}
		if st&0o077 != 0 {
			t.Errorf("%s has mode %o, want no group/other access", p, st)
		}
	}
}
