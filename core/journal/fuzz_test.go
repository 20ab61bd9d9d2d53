package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// farFuture is when the seed log's replay digests expire: unexpired when
// the fuzzer runs, so Open's handling of them is checked, and fixed, as
// seeds must be the same in every fuzzing process.
var farFuture = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// seedLog builds a real log with every record type.
func seedLog(f *testing.F) []byte {
	dir := f.TempDir()
	j, err := Open(dir, nil)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		r := rec(i)
		switch i {
		case 4:
			r.Shared = "ssh"
		case 5:
			r.Origin = "bastion-1"
		}
		if err := j.Grant(r); err != nil {
			f.Fatal(err)
		}
	}
	// SPA grants carry who asked and their packet's replay digest; a
	// digest may also be recorded on its own.
	for i, auth := range []string{"fwknop", "ssh"} {
		r := rec(6 + i)
		r.Auth, r.User = auth, "user "+auth
		if auth == "ssh" {
			r.Key = "SHA256:2DcjMmirlxAmeZV+U2+KobJWy8hD6y26u8srX4aE/o0"
		}
		r.Replay = Replay{Digest: [32]byte{byte(i + 1), 2, 3}, Expires: farFuture.Add(time.Duration(i) * time.Minute)}
		if err := j.Grant(r); err != nil {
			f.Fatal(err)
		}
	}
	if err := j.Replay(Replay{Digest: [32]byte{9, 9, 9}, Expires: farFuture}); err != nil {
		f.Fatal(err)
	}
	for _, step := range []error{
		j.Extend(rec(1).ID, t0.Add(time.Hour)),
		j.Started(rec(4).ID, t0, t0.Add(time.Hour)),
		j.Revoking(rec(0).ID),
		j.Forgotten(rec(0).ID, t0),
		j.Revoking(rec(2).ID),
		j.Revoking(rec(3).ID),
		j.Revoked(rec(3).ID, t0),
		j.Published(rec(4).ID),
		j.SetFleetRevision("bastions", 42),
	} {
		if step != nil {
			f.Fatal(step)
		}
	}
	j.Close()
	b, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzReplay feeds arbitrary bytes to the reader as a log file. Replay
// must never panic or fail on content, must return only well-formed
// records, and Open must agree with ReadPending, leave a log with no
// damage in it, and accept and keep a new grant.
func FuzzReplay(f *testing.F) {
	good := seedLog(f)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte("not a journal"))
	f.Add(append(bytes.Clone(good), good...))
	for _, cut := range []int{1, 4, 12, 13, 14, len(good) / 2, len(good) - 1} {
		f.Add(bytes.Clone(good[:cut]))
	}
	for _, at := range []int{0, 5, 9, 12, 20, len(good) / 3, len(good) - 2} {
		b := bytes.Clone(good)
		b[at] ^= 0x10
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res := scan(data)
		if res.end < 0 || res.end > int64(len(data)) {
			t.Fatalf("end %d outside 0..%d", res.end, len(data))
		}
		if res.tail != nil && res.tail.off+res.tail.len != int64(len(data)) {
			t.Fatalf("tail %+v does not reach the end (%d)", res.tail, len(data))
		}
		want := res.st.pending()
		seen := map[string]bool{}
		for k, r := range want {
			if err := r.validate(); err != nil {
				t.Fatalf("malformed record %+v: %v", r, err)
			}
			if seen[r.ID] {
				t.Fatalf("id %s returned twice", r.ID)
			}
			seen[r.ID] = true
			if k > 0 && r.Start.Before(want[k-1].Start) {
				t.Fatalf("records out of start order: %v", ids(want))
			}
		}

		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, LogName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rp, err := ReadPending(dir)
		if err != nil {
			t.Fatalf("ReadPending: %v", err)
		}
		samePending(t, "ReadPending", rp, want)
		opening := time.Now()
		j, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		samePending(t, "Open", j.Pending(), want)
		// Open knows the replay digests the scan found: all those still
		// unexpired after Open, and none expired before it (Open may drop
		// what expires while it runs).
		gotReplays := map[[32]byte]time.Time{}
		for _, r := range j.Replays() {
			gotReplays[r.Digest] = r.Expires
		}
		opened := time.Now()
		j.now = func() time.Time { return opened }
		for _, r := range res.st.liveReplays(opened) {
			if exp, ok := gotReplays[r.Digest]; !ok || !exp.Equal(r.Expires) {
				t.Fatalf("Open: replay digest %x: %v, the scan found it until %v", r.Digest, exp, r.Expires)
			}
		}
		for d, exp := range gotReplays {
			if scanned, ok := res.st.replays[d]; !ok || !scanned.Equal(exp) || !exp.After(opening) {
				t.Fatalf("Open: replay digest %x until %v, not in the scan (%v) or expired", d, exp, scanned)
			}
		}
		after, err := os.ReadFile(filepath.Join(dir, LogName))
		if err != nil {
			t.Fatal(err)
		}
		if r := scan(after); r.tail != nil || len(r.skipped) != 0 {
			t.Fatalf("Open left damage: tail %+v skipped %+v", r.tail, r.skipped)
		}
		// A fresh grant lands after whatever survived and reads back.
		n := rec(9999)
		n.ID = "fuzz-new-grant"
		if err := j.Grant(n); err != nil && !seen[n.ID] {
			t.Fatalf("Grant after Open: %v", err)
		}
		got, err := ReadPending(dir)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range got {
			found = found || r.ID == n.ID
		}
		if !found || len(got) != len(want)+btoi(!seen[n.ID]) {
			t.Fatalf("after Grant: %v (had %v)", ids(got), ids(want))
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzReadLog feeds arbitrary bytes to ReadLog (and to the decoders of
// every record kind, the Started record included): it must never panic,
// return only well-formed grants, and know every grant replay keeps.
func FuzzReadLog(f *testing.F) {
	good := seedLog(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	for _, at := range []int{3, 13, 40, len(good) / 2} {
		b := bytes.Clone(good)
		b[at] ^= 0x21
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, LogName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		es, err := ReadLog(dir)
		if err != nil {
			t.Fatalf("ReadLog: %v", err)
		}
		granted := map[string]bool{}
		for _, e := range es {
			if e.Kind == KindGrant {
				if err := e.Grant.validate(); err != nil {
					t.Fatalf("malformed grant %+v: %v", e.Grant, err)
				}
				granted[e.ID] = true
			}
		}
		for _, r := range scan(data).st.pending() {
			if !granted[r.ID] {
				t.Fatalf("pending grant %s not in ReadLog", r.ID)
			}
		}
	})
}
