package journal

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sesame-knock/sesame/internal/syncbuf"

	"github.com/hashicorp/go-hclog"
)

// tinyFS mounts a tmpfs with the given options on a fresh directory and
// unmounts it in Cleanup. It skips without root.
func tinyFS(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a tmpfs needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1024)
	for i := 0; ; i++ {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			return
		}
		if i > 1<<20 {
			t.Fatal("filesystem never filled up")
		}
	}
}

func TestFullDisk(t *testing.T) {
	mnt := tinyFS(t, "size=64k,mode=0700")
	dir := filepath.Join(mnt, "state")
	j := mustOpen(t, dir)
	for i := 0; i < 5; i++ {
		mustGrant(t, j, rec(i))
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	// The tail page may still have room for a few records; keep granting
	// until the disk says no.
	var err error
	next := 5
	for ; next < 1000; next++ {
		if err = j.Grant(rec(next)); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("1000 grants fitted on a full 64k filesystem")
	}
	wantMsg := "journal: append grant " + rec(next).ID + ": no space left on device"
	if err.Error() != wantMsg || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("full disk: %q, want %q wrapping ENOSPC", err, wantMsg)
	}
	var want []Record
	for i := 0; i < next; i++ {
		want = append(want, rec(i))
	}
	// Reads keep working and nothing half-written is visible.
	samePending(t, "Pending on full disk", j.Pending(), want)
	rp, rerr := ReadPending(dir)
	if rerr != nil {
		t.Fatal(rerr)
	}
	samePending(t, "ReadPending on full disk", rp, want)
	if res := scan(readLog(t, dir)); res.tail != nil {
		t.Fatalf("failed append left a torn tail: %+v", res.tail)
	}
	// Other calls fail the same clear way, and the refused state changes
	// do not happen.
	if err := j.Revoked(rec(0).ID, t0); err == nil {
		// A revoked frame is smaller than a grant and may fit; if it did
		// it must have taken effect.
		want = want[1:]
	} else if !strings.HasSuffix(err.Error(), "no space left on device") {
		t.Fatalf("Revoked on full disk: %v", err)
	}
	samePending(t, "after Revoked on full disk", j.Pending(), want)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mustGrant(t, j, rec(next))
	want = append(want, rec(next))
	samePending(t, "after freeing space", j.Pending(), want)
	j.Close()
	samePending(t, "reopened", mustOpen(t, dir).Pending(), want)
}

// Compaction needs room for a second copy; on a full disk it fails with a
// warning, the journal keeps appending to the old log, and it compacts
// once there is room again.
func TestFullDiskCompaction(t *testing.T) {
	mnt := tinyFS(t, "size=1m,mode=0700")
	dir := filepath.Join(mnt, "state")
	var logBuf syncbuf.Buffer
	j, err := Open(dir, hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Debug}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	for i := 0; i < 40; i++ {
		mustGrant(t, j, rec(10000+i)) // a compacted copy needs over 8k
	}
	next := 0
	for j.frames < compactMin-1 { // one grant+revoke short of compaction
		mustGrant(t, j, rec(next))
		if err := j.Revoked(rec(next).ID, t0); err != nil {
			t.Fatal(err)
		}
		next++
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	st, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	// Room for a few small frames, not for a compacted copy.
	if err := os.Truncate(filler, st.Size()-4096); err != nil {
		t.Fatal(err)
	}
	for k := 0; j.frames <= compactMin+2; k++ {
		if err := j.Revoked(rec(10000+k).ID, t0); err != nil {
			t.Fatalf("small append with a page free: %v", err)
		}
	}
	if j.compactAfter == 0 || !strings.Contains(logBuf.String(), "compaction failed") ||
		!strings.Contains(logBuf.String(), "no space left on device") {
		t.Fatalf("compaction on a full disk did not fail visibly; log:\n%s", logBuf.String())
	}
	if _, err := os.Stat(filepath.Join(dir, tmpName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed compaction left its temp file: %v", err)
	}
	want := j.Pending()
	samePending(t, "ReadPending after failed compaction", mustReadPending(t, dir), want)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	framesBefore := j.frames
	for j.frames >= framesBefore {
		mustGrant(t, j, rec(next))
		if err := j.Revoked(rec(next).ID, t0); err != nil {
			t.Fatal(err)
		}
		next++
		if next > 5000 {
			t.Fatal("never compacted after space was freed")
		}
	}
	samePending(t, "after compaction", j.Pending(), want)
	j.Close()
	samePending(t, "reopened", mustOpen(t, dir).Pending(), want)
}

// TestReadOnlyDir: Open on a read-only filesystem fails with a clear
// error rather than half-working.
func TestReadOnlyDir(t *testing.T) {
	mnt := tinyFS(t, "size=64k,ro")
	_, err := Open(filepath.Join(mnt, "state"), nil)
	if err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("Open on a read-only filesystem: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "journal: open "+filepath.Join(mnt, "state")) {
		t.Errorf("error %q does not name the directory", err)
	}
}
