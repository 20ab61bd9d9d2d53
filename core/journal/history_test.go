package journal

import (
	"reflect"
	"testing"
	"time"
)

func TestReadLogKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	a, b := rec(4), rec(1)
	mustGrant(t, j, a)
	mustGrant(t, j, b)
	later := t0.Add(time.Hour)
	for _, err := range []error{
		j.Started(a.ID, t0.Add(time.Second), later),
		j.Extend(a.ID, later.Add(time.Minute)),
		j.Revoking(a.ID),
		j.Revoked(a.ID, later),
		j.Revoking(b.ID),
		j.Forgotten(b.ID, later),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A torn tail is skipped, as replay skips it.
	data := readLog(t, dir)
	writeLog(t, dir, append(data, data[:20]...))
	got, err := ReadLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	a.Start, a.Deadline = a.Start.UTC(), a.Deadline.UTC()
	b.Start, b.Deadline = b.Start.UTC(), b.Deadline.UTC()
	want := []Entry{
		{Kind: KindGrant, ID: a.ID, Grant: a},
		{Kind: KindGrant, ID: b.ID, Grant: b},
		{Kind: KindStarted, ID: a.ID, At: t0.Add(time.Second), Deadline: later},
		{Kind: KindExtend, ID: a.ID, Deadline: later.Add(time.Minute)},
		{Kind: KindRevoking, ID: a.ID},
		{Kind: KindRevoked, ID: a.ID, At: later},
		{Kind: KindRevoking, ID: b.ID},
		{Kind: KindRevoked, ID: b.ID, At: later, Forgotten: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadLog:\n got  %+v\n want %+v", got, want)
	}
	if p := mustReadPending(t, dir); len(p) != 0 {
		t.Errorf("pending after revoke and forget: %v", ids(p))
	}
}

// Compaction keeps what a pending start and its timeout say.
func TestCompactionKeepsStartState(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	a, b := rec(4), rec(8)
	mustGrant(t, j, a)
	mustGrant(t, j, b)
	if err := j.Started(b.ID, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := j.Pending()
	j.mu.Lock()
	err := j.compactLocked()
	j.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	got := mustReadPending(t, dir)
	samePending(t, "compacted", got, want)
	if !got[0].StartPending || got[1].StartPending || got[0].Timeout != 30*time.Second {
		t.Errorf("compaction lost start state: %+v", got)
	}
}
