package fleet

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The crash child: a node that journals each grant (fsynced) before it
// publishes it and journals the confirmation after, as sesamed does,
// until it is killed.
func TestCrashChild(t *testing.T) {
	eps, journalPath := os.Getenv("SESAME_FLEET_CHILD_ENDPOINTS"), os.Getenv("SESAME_FLEET_CHILD_JOURNAL")
	if eps == "" {
		t.Skip("run by TestCrashWhilePublishing")
	}
	f, err := New(config("g", "a", strings.Split(eps, ",")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.OpenFile(journalPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for {
		g := testGrant(time.Hour)
		journalLine(t, j, "J", g)
		if err := f.Publish(context.Background(), g); err != nil {
			t.Fatal(err)
		}
		journalLine(t, j, "C", g)
	}
}

func journalLine(t *testing.T, j *os.File, kind string, g Grant) {
	val, err := g.Marshal()
	if err != nil {
		// Origin is set by Publish; journal the grant as the daemon has it.
		g.Origin = "a"
		val, err = g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.WriteString(kind + " " + string(val) + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
}

// sesamed SIGKILLed while publishing: after a restart that publishes
// again every journaled, unconfirmed grant, every journaled grant is in
// the group (none lost) and every key was written exactly once (none
// published twice), whatever the moment of the kill (by seed).
func TestCrashWhilePublishing(t *testing.T) {
	rng := seed(t)
	c := startCluster(t, 1)
	admin := c.Client(t)
	ctx := ctxT(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	journalPath := filepath.Join(t.TempDir(), "journal")

	for round := range 3 {
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SESAME_FLEET_CHILD_ENDPOINTS="+strings.Join(c.Endpoints(), ","), "SESAME_FLEET_CHILD_JOURNAL="+journalPath)
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it publish a few, then kill it at a random moment.
		before := len(readJournal(t, journalPath))
		for deadline := time.Now().Add(settle); len(readJournal(t, journalPath)) < before+4; {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the child did not publish: %s", out)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		// Restart: publish what is journaled but not confirmed.
		a := newFleet(t, config("g", "a", c.Endpoints()))
		lines := readJournal(t, journalPath)
		confirmed := make(map[string]bool)
		for _, l := range lines {
			if l.kind == "C" {
				confirmed[l.g.ID] = true
			}
		}
		journaled := make(map[string]bool)
		republished := 0
		for _, l := range lines {
			if l.kind != "J" {
				continue
			}
			journaled[l.g.ID] = true
			if !confirmed[l.g.ID] {
				republished++
				if err := a.Publish(ctx, l.g); err != nil {
					t.Fatalf("re-publishing %s: %v", l.g.ID, err)
				}
			}
		}
		t.Logf("round %d: %d grants journaled, %d unconfirmed at the kill, re-published", round, len(journaled), republished)

		resp, err := admin.Get(ctx, grantsPrefix("g"), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != len(journaled) {
			t.Fatalf("the group holds %d grants, the journal %d", len(resp.Kvs), len(journaled))
		}
		for _, kv := range resp.Kvs {
			id, _ := idFromKey("g", string(kv.Key))
			if !journaled[id] {
				t.Errorf("%s published but not journaled", kv.Key)
			}
			if kv.Version != 1 {
				t.Errorf("%s written %d times", kv.Key, kv.Version)
			}
		}
	}
}

type journalEntry struct {
	kind string
	g    Grant
}

func readJournal(t *testing.T, path string) []journalEntry {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []journalEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, val, ok := strings.Cut(sc.Text(), " ")
		g, err := Parse([]byte(val))
		if !ok || err != nil {
			continue // a line torn by the kill
		}
		out = append(out, journalEntry{kind, g})
	}
	return out
}
