package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestMarkStates(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "g1.started")
	if m := ReadMark(marker); m.State != NotRun {
		t.Fatalf("no files: %v", m)
	}
	r := New(Options{})
	before := time.Now()
	res := r.RunMarked(context.Background(), "d", "exit 3", marker)
	if res.ExitCode != 3 {
		t.Fatalf("result %+v", res)
	}
	m := ReadMark(marker)
	if m.State != Done || m.Status != 3 || m.OK() || m.At.Before(before.Add(-time.Second)) || m.At.After(time.Now().Add(time.Second)) {
		t.Fatalf("after exit 3: %+v", m)
	}
	// A new run clears the old status first: while it runs, the mark says
	// running, not the previous run's "done".
	done := make(chan Result)
	go func() { done <- r.RunMarked(context.Background(), "d", "sleep 0.3", marker) }()
	if !waitFor(func() bool { return ReadMark(marker).State == Running }) {
		t.Fatalf("second run not seen running: %v", ReadMark(marker))
	}
	<-done
	if m := ReadMark(marker); !m.OK() {
		t.Fatalf("after sleep: %v", m)
	}
	// A launch record whose wrapper is gone, with no status: lost.
	os.Remove(marker)
	os.WriteFile(marker+".pid", []byte("999999999\n"), 0o600)
	if m := ReadMark(marker); m.State != Lost {
		t.Fatalf("dead wrapper: %v", m)
	}
	// An empty launch record whose lock is held: the child forked to run
	// the wrapper, which has not written its pid yet (nor even exec'd:
	// nothing in its arguments names the marker). It counts as running,
	// and WaitMark kills it at its deadline.
	lock, err := launchRecord(marker)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("/bin/sleep", "30")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.ExtraFiles = []*os.File{lock}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	lock.Close()
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	defer c.Process.Kill()
	if m := ReadMark(marker); m.State != Running || m.Pid != 0 {
		t.Fatalf("lock held, no pid yet: %+v", m)
	}
	if m := WaitMark(context.Background(), marker, time.Now()); !m.Killed || m.State != Lost {
		t.Fatalf("after the kill: %+v", m)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock holder was not killed")
	}
	// A reused pid that is not the wrapper does not count.
	os.WriteFile(marker+".pid", []byte(strconv.Itoa(os.Getpid())), 0o600)
	if m := ReadMark(marker); m.State != Lost {
		t.Fatalf("unrelated pid: %v", m)
	}
}

func TestWaitMarkKillsTheGroupAtUntil(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "g2.started")
	r := New(Options{})
	// The runner's own context ends at once, as if the daemon that ran it
	// had died: the wrapper and its child keep running.
	go r.RunMarked(context.Background(), "d", "(sleep 0.4; touch "+dir+"/child) & sleep 10", marker)
	if !waitFor(func() bool { return ReadMark(marker).State == Running }) {
		t.Fatal("not running")
	}
	start := time.Now()
	m := WaitMark(context.Background(), marker, time.Now().Add(100*time.Millisecond))
	if !m.Killed || m.State == Running || m.OK() {
		t.Fatalf("mark %+v", m)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("wait took %v", el)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := os.Stat(dir + "/child"); err == nil {
		t.Error("the command's child survived the kill")
	}
	// Waiting for one that finishes in time reports its status.
	go r.RunMarked(context.Background(), "d", "sleep 0.2; exit 4", marker)
	waitFor(func() bool { return ReadMark(marker).State == Running })
	if m := WaitMark(context.Background(), marker, time.Now().Add(time.Minute)); m.State != Done || m.Status != 4 || m.Killed {
		t.Fatalf("mark %+v", m)
	}
}

func TestRunMarkedWithoutRoomDoesNotRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ran")
	res := New(Options{}).RunMarked(context.Background(), "d", "touch "+out, filepath.Join(dir, "missing", "g3.stopped"))
	if !errors.Is(res.Err, ErrNoMarker) {
		t.Fatalf("err %v", res.Err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the command ran without a launch record")
	}
}

func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// A marked command that never got a slot leaves no launch record: after a
// crash it reads as never run, not as lost.
func TestNoLaunchRecordWithoutASlot(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "g4.started")
	r := New(Options{MaxConcurrent: 1})
	go r.Run(context.Background(), "d", "sleep 1")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := r.RunMarked(ctx, "d", "true", marker); res.Err == nil {
		t.Fatal("ran without a slot")
	}
	if m := ReadMark(marker); m.State != NotRun {
		t.Errorf("mark %v, want not run", m)
	}
}
