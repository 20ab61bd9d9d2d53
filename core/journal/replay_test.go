package journal

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func digest(i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint("packet", i))) }

// spaRec is rec(i) asked for by an SPA packet whose digest expires at exp.
func spaRec(i int, exp time.Time) Record {
	r := rec(2*i + 1) // native ports, no stop command
	r.Auth, r.User, r.Key = "ssh", "alice@laptop", "SHA256:abc"
	r.Replay = Replay{Digest: digest(i), Expires: exp}
	return r
}

// An accepted SPA packet's digest outlives its grant: revoked, reopened,
// it is still there until it expires, and then it is gone.
func TestReplayDigestsOutliveTheirGrant(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	now := t0
	j.now = func() time.Time { return now }
	exp := t0.Add(4 * time.Minute)
	r := spaRec(1, exp)
	mustGrant(t, j, r)
	if err := j.Replay(Replay{Digest: digest(2), Expires: exp.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := j.Revoked(r.ID, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	want := []Replay{{Digest: digest(1), Expires: exp}, {Digest: digest(2), Expires: exp.Add(time.Minute)}}
	if got := j.Replays(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Replays = %v, want %v", got, want)
	}
	j.Close()

	j = mustOpen(t, dir)
	j.now = func() time.Time { return now }
	if got := j.Replays(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening, Replays = %v, want %v", got, want)
	}
	if len(j.Pending()) != 0 {
		t.Fatalf("pending %v, want none", ids(j.Pending()))
	}
	now = exp
	if got := j.Replays(); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("at the first expiry, Replays = %v, want %v", got, want[1:])
	}
	// The grant's identity and digest came back as written.
	es, err := ReadLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	if es[0].Kind != KindGrant || !reflect.DeepEqual(es[0].Grant, r) {
		t.Errorf("first record %+v, want the grant %+v", es[0], r)
	}
	if es[1].Kind != KindReplay || es[1].Replay != want[1] {
		t.Errorf("second record %+v, want the replay %v", es[1], want[1])
	}
}

// Compaction keeps every unexpired digest, also those whose grants are
// gone, and drops the expired ones.
func TestCompactionKeepsReplayDigests(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	now := t0
	j.now = func() time.Time { return now }
	const n = 50
	for i := 0; i < n; i++ {
		r := spaRec(i, t0.Add(time.Duration(i)*time.Minute+time.Second))
		mustGrant(t, j, r)
		if err := j.Revoked(r.ID, t0); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(10 * time.Minute) // digests 0-9 expired
	// Dead frames until a compaction.
	for i, compacted := 0, false; !compacted; i++ {
		before := j.frames
		r := rec(10000 + 2*(i%1000))
		r.ID = fmt.Sprintf("filler%d", i)
		mustGrant(t, j, r)
		if err := j.Revoked(r.ID, t0); err != nil {
			t.Fatal(err)
		}
		compacted = j.frames < before
		if i > 10*compactMin {
			t.Fatal("no compaction")
		}
	}
	got := j.Replays()
	if len(got) != n-10 || got[0].Digest != digest(10) {
		t.Fatalf("after compaction %d digests (first %x), want %d from digest(10)", len(got), got[0].Digest[:4], n-10)
	}
	j.Close()
	j = mustOpen(t, dir)
	j.now = func() time.Time { return now }
	if again := j.Replays(); !reflect.DeepEqual(again, got) {
		t.Fatalf("reopened after compaction: %d digests, want %d", len(again), len(got))
	}
	// The compacted file holds them as replay records.
	es, err := ReadLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, e := range es {
		if e.Kind == KindReplay {
			kept++
		}
	}
	if kept != n-10 {
		t.Errorf("%d replay records in the compacted log, want %d", kept, n-10)
	}
}

func TestRecordIdentityLimits(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	for _, c := range []struct {
		name string
		f    func(*Record)
	}{
		{"auth", func(r *Record) { r.Auth = "not an id" }},
		{"user", func(r *Record) { r.User = string([]byte{0xff}) }},
		{"long user", func(r *Record) { r.User = string(make([]byte, MaxUserLen+1)) }},
		{"key", func(r *Record) { r.Key = string(make([]byte, MaxKeyLen+1)) }},
	} {
		r := spaRec(1, t0.Add(time.Minute))
		c.f(&r)
		if err := j.Grant(r); err == nil {
			t.Errorf("%s: Grant accepted %+v", c.name, r)
		}
	}
	if err := j.Replay(Replay{Digest: digest(1)}); err == nil {
		t.Error("Replay without an expiry accepted")
	}
}
