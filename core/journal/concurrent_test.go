package journal

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestReadPendingWhileWriting runs readers against a writer that grants
// record i and revokes record i-window, compacting as it goes. Every state
// the writer passes through is a contiguous run of record numbers of at
// most window+1 grants, so every snapshot a reader sees must be one too.
func TestReadPendingWhileWriting(t *testing.T) {
	const window, rounds = 4, 1500
	dir := t.TempDir()
	j := mustOpen(t, dir)
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				rs, err := ReadPending(dir)
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				if err := contiguous(rs, window+1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < rounds; i++ {
		mustGrant(t, j, rec(i))
		if i >= window {
			if err := j.Revoked(rec(i-window).ID, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() < 10 {
		t.Fatalf("only %d reads overlapped the writer", reads.Load())
	}
	t.Logf("%d concurrent reads", reads.Load())
}

func contiguous(rs []Record, max int) error {
	if len(rs) > max {
		return fmt.Errorf("snapshot holds %d grants, at most %d expected: %v", len(rs), max, ids(rs))
	}
	for k, r := range rs {
		if err := r.validate(); err != nil {
			return fmt.Errorf("malformed record %+v: %v", r, err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(r.ID, "g"))
		if k > 0 {
			prev, _ := strconv.Atoi(strings.TrimPrefix(rs[k-1].ID, "g"))
			if n != prev+1 {
				return fmt.Errorf("snapshot is not a contiguous window: %v", ids(rs))
			}
		}
	}
	return nil
}

// TestSIGKILL kills a real writer process at arbitrary points of a
// grant/revoke churn that compacts many times, then checks that every
// grant it acknowledged and had not revoked is pending, and nothing it
// acknowledged as revoked is.
func TestSIGKILL(t *testing.T) {
	if os.Getenv("SESAME_JOURNAL_CHILD") != "" {
		t.Skip("child")
	}
	for _, killAfter := range []int{1, 37, 700, 2100, 3333, 5000} {
		t.Run(strconv.Itoa(killAfter), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestChildWriter$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SESAME_JOURNAL_CHILD="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			// Every line the child printed is an acknowledgement: the call
			// had returned. Kill it after killAfter of them, then read the
			// rest it managed to print before dying.
			granted, revoked := map[string]bool{}, map[string]bool{}
			var order []string // granted ids in grant order
			sc := bufio.NewScanner(out)
			lines := 0
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 2 || (f[0] != "G" && f[0] != "R") {
					continue // test framework chatter
				}
				if f[0] == "G" {
					granted[f[1]] = true
					order = append(order, f[1])
				} else {
					revoked[f[1]] = true
				}
				if lines++; lines == killAfter {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			}
			cmd.Wait()
			if lines < killAfter {
				t.Fatalf("child stopped after %d lines: %v", lines, sc.Err())
			}

			j := mustOpen(t, dir)
			pending := map[string]bool{}
			for _, r := range j.Pending() {
				pending[r.ID] = true
			}
			// At most one call was in flight when the child died: a grant
			// that may be durable but unacknowledged (an extra pending id),
			// or the revocation of the oldest unrevoked grant (a missing
			// one). Anything more is a lost acknowledgement.
			var missing, extra []string
			for _, id := range order {
				if !revoked[id] && !pending[id] {
					missing = append(missing, id)
				}
			}
			for id := range pending {
				if revoked[id] {
					t.Errorf("acknowledged revocation of %s lost", id)
				}
				if !granted[id] {
					extra = append(extra, id)
				}
			}
			oldest := ""
			for _, id := range order {
				if !revoked[id] {
					oldest = id
					break
				}
			}
			switch {
			case len(missing)+len(extra) > 1:
				t.Errorf("more than one in-flight call: missing %v, extra %v", missing, extra)
			case len(missing) == 1 && missing[0] != oldest:
				t.Errorf("acknowledged grant %s lost (only %s could have been in revocation)", missing[0], oldest)
			}
			slices.Sort(extra)
			t.Logf("killed after %d acknowledgements (%d printed); %d pending; in flight: missing %v extra %v",
				killAfter, lines, len(pending), missing, extra)
		})
	}
}

// TestChildWriter is the process TestSIGKILL kills. It keeps 20 grants
// live and churns forever, printing each acknowledgement after the call
// returned.
func TestChildWriter(t *testing.T) {
	dir := os.Getenv("SESAME_JOURNAL_CHILD")
	if dir == "" {
		t.Skip("only run as TestSIGKILL's child")
	}
	j, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		if err := j.Grant(rec(i)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "G %s\n", rec(i).ID)
		w.Flush()
		if i >= 20 {
			id := rec(i - 20).ID
			if err := j.Revoking(id); err != nil {
				t.Fatal(err)
			}
			if err := j.Revoked(id, t0); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(w, "R %s\n", id)
			w.Flush()
		}
	}
}
