package journal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// churn grants and revokes so that live stays at `live` grants, for n
// rounds, starting at record number from. It returns the next number.
func churn(t *testing.T, j *Journal, from, n, live int) int {
	t.Helper()
	i := from
	for ; i < from+n; i++ {
		mustGrant(t, j, rec(i))
		if i-live >= from {
			if err := j.Revoking(rec(i - live).ID); err != nil {
				t.Fatal(err)
			}
			if err := j.Revoked(rec(i-live).ID, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	return i
}

func TestCompactionKeepsLogSmall(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	// Long-lived grants with state that compaction must carry over.
	mustGrant(t, j, rec(10001))
	mustGrant(t, j, rec(10002))
	if err := j.Extend(rec(10001).ID, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := j.Revoking(rec(10002).ID); err != nil {
		t.Fatal(err)
	}
	churn(t, j, 0, 1200, 5) // 3590 frames: three compactions
	want := j.Pending()
	if len(want) != 7 {
		t.Fatalf("%d pending, want 7", len(want))
	}
	frames := len(frameOffsets(t, readLog(t, dir)))
	if frames > compactMin+1 {
		t.Fatalf("log holds %d frames after 3590 appends with 7 live: never compacted", frames)
	}
	if frames != j.frames {
		t.Fatalf("journal counts %d frames, file holds %d", j.frames, frames)
	}
	j.Close()
	j2 := mustOpen(t, dir)
	samePending(t, "reopened", j2.Pending(), want)
	for _, r := range j2.Pending() {
		if r.ID == rec(10001).ID && !r.Deadline.Equal(t0.Add(48*time.Hour)) {
			t.Errorf("extended deadline lost in compaction: %+v", r)
		}
		if r.RevokeStarted != (r.ID == rec(10002).ID) {
			t.Errorf("RevokeStarted wrong after compaction: %+v", r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, tmpName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left behind: %v", err)
	}
}

func TestCompactionCrashPoints(t *testing.T) {
	tests := []struct {
		point   string
		tmpLeft bool // the temp file exists after the crash
	}{
		{crashTmpPartial, true},
		{crashTmpSynced, true},
		{crashRenamed, false},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			dir := t.TempDir()
			j, err := Open(dir, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			mustGrant(t, j, rec(10001))
			if err := j.Revoking(rec(10001).ID); err != nil {
				t.Fatal(err)
			}
			next := churn(t, j, 0, 300, 3)
			want := j.Pending()
			oldLog := readLog(t, dir)

			crashed := 0
			crashAt = func(p string) bool {
				if p == tt.point {
					crashed++
					return true
				}
				return false
			}
			t.Cleanup(func() { crashAt = nil })
			j.mu.Lock()
			err = j.compactLocked()
			j.mu.Unlock()
			crashAt = nil
			if !errors.Is(err, errCrashed) || crashed != 1 {
				t.Fatalf("compaction: %v after %d crashes, want one simulated crash", err, crashed)
			}
			_, statErr := os.Stat(filepath.Join(dir, tmpName))
			if tmpLeft := statErr == nil; tmpLeft != tt.tmpLeft {
				t.Fatalf("temp file present = %v after crash at %s, want %v", tmpLeft, tt.point, tt.tmpLeft)
			}
			if now := readLog(t, dir); tt.point != crashRenamed && string(now) != string(oldLog) {
				t.Fatalf("log changed before the rename")
			} else if tt.point == crashRenamed && len(now) >= len(oldLog) {
				t.Fatalf("log not replaced by the compacted one at the rename (%d bytes, was %d)", len(now), len(oldLog))
			}
			rp, err := ReadPending(dir)
			if err != nil {
				t.Fatal(err)
			}
			samePending(t, "ReadPending after crash", rp, want)

			j2 := mustOpen(t, dir)
			samePending(t, "reopened after crash", j2.Pending(), want)
			if _, err := os.Stat(filepath.Join(dir, tmpName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open left the temp file: %v", err)
			}
			mustGrant(t, j2, rec(next))
			j2.Close()
			want = append(want, rec(next))
			sortByStart(want)
			samePending(t, "after append", mustOpen(t, dir).Pending(), want)
		})
	}
}

// A compaction that fails for a real reason (here: the temp name is a
// directory) leaves the journal working and is retried only later.
func TestCompactionFailureIsNotFatal(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	if err := os.Mkdir(filepath.Join(dir, tmpName), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tmpName, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	churn(t, j, 0, 600, 2) // 1796 frames: compaction is due and fails
	if j.frames != 1796 {
		t.Fatalf("frames = %d: compaction cannot have succeeded", j.frames)
	}
	if j.compactAfter <= compactMin {
		t.Fatalf("compactAfter = %d: failure did not back off", j.compactAfter)
	}
	want := j.Pending()
	j.Close()
	if err := os.RemoveAll(filepath.Join(dir, tmpName)); err != nil {
		t.Fatal(err)
	}
	samePending(t, "reopened", mustOpen(t, dir).Pending(), want)
}
