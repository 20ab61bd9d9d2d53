package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoMarker means RunMarked could not record the launch of a command
// (a full or read-only state directory), so it did not run it.
var ErrNoMarker = errors.New("cannot create the command's marker")

// MarkState is what a marker says about a command RunMarked launched.
type MarkState int

const (
	// NotRun: no launch record and no status: RunMarked never started
	// the command (or the mark was removed).
	NotRun MarkState = iota
	// Lost: launched, but no wrapper is left and no status was written:
	// the wrapper was killed, or it had no room to write the status. The
	// command may or may not have run to its end.
	Lost
	// Running: the wrapper (and so the command) is still running.
	Running
	// Done: the command finished; Mark.Status is its exit status.
	Done
)

func (s MarkState) String() string {
	return [...]string{"not run", "lost", "running", "done"}[s]
}

// Mark is what RunMarked left at a marker path.
type Mark struct {
	State MarkState
	// Status is the exit status (Done); -1 when the file could not be
	// parsed.
	Status int
	// At is when the wrapper wrote the status (the file's modification
	// time, wall clock), for Done.
	At time.Time
	// Pid is the wrapper's pid, which is also its process group (Running).
	Pid int
	// Killed is set by WaitMark when it killed the wrapper's group.
	Killed bool
}

// OK reports whether the command is known to have finished with status 0.
func (m Mark) OK() bool { return m.State == Done && m.Status == 0 }

func (m Mark) String() string {
	switch m.State {
	case Done:
		return fmt.Sprintf("done (status %d)", m.Status)
	case Running:
		return fmt.Sprintf("running (pid %d)", m.Pid)
	}
	return m.State.String()
}

// launchRecord clears what an earlier run left at marker and creates the
// empty launch record marker+".pid" that the wrapper fills in, locked by
// the returned file, which the wrapper inherits.
func launchRecord(marker string) (*os.File, error) {
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNoMarker, err)
	}
	f, err := os.OpenFile(marker+".pid", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMarker, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: lock %s: %v", ErrNoMarker, f.Name(), err)
	}
	return f, nil
}

// locked reports whether a process (the wrapper, or the child about to
// become it) holds the launch record's lock.
func locked(record string) bool {
	f, err := os.Open(record)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// ReadMark reports what RunMarked left at marker. The command counts as
// Running while its launch record is locked, which it is from the fork
// on, before the wrapper has written its pid (Pid is then 0).
func ReadMark(marker string) Mark {
	if m, ok := readStatus(marker); ok {
		return m
	}
	if _, err := os.Stat(marker + ".pid"); err != nil {
		return Mark{State: NotRun}
	}
	if locked(marker + ".pid") {
		return Mark{State: Running, Pid: wrapperPid(marker)}
	}
	// The wrapper may have finished between the two reads.
	if m, ok := readStatus(marker); ok {
		return m
	}
	return Mark{State: Lost}
}

// wrapperPid is the pid the wrapper wrote, when it is alive, else 0.
func wrapperPid(marker string) int {
	b, err := os.ReadFile(marker + ".pid")
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !wrapperAlive(pid, marker) {
		return 0
	}
	return pid
}

func readStatus(marker string) (Mark, bool) {
	f, err := os.Open(marker)
	if err != nil {
		return Mark{}, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Mark{}, false
	}
	b := make([]byte, 16)
	n, _ := f.Read(b)
	s := strings.TrimSpace(string(b[:n]))
	st, err := strconv.Atoi(s)
	if err != nil || !strings.HasSuffix(string(b[:n]), "\n") {
		// Being written (echo has created the file, not yet filled it),
		// or no room to write it: the wrapper decides.
		if locked(marker + ".pid") {
			return Mark{State: Running, Pid: wrapperPid(marker)}, true
		}
		st = -1
	}
	return Mark{State: Done, Status: st, At: fi.ModTime()}, true
}

// WaitMark waits while the command at marker is Running (polling every
// 20 ms), until it ends, ctx ends, or until passes; at until it kills
// the wrapper's process group (the command with it) and reports the
// mark with Killed set. It returns the last mark read.
func WaitMark(ctx context.Context, marker string, until time.Time) Mark {
	for {
		m := ReadMark(marker)
		if m.State != Running {
			return m
		}
		if !time.Now().Before(until) {
			killHolders(marker)
			for i := 0; i < 50 && locked(marker+".pid"); i++ {
				time.Sleep(10 * time.Millisecond)
			}
			m = ReadMark(marker)
			m.Killed = true
			return m
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return m
		case <-t.C:
		}
	}
}

// RemoveMark removes the files RunMarked left at marker.
func RemoveMark(marker string) {
	os.Remove(marker)
	os.Remove(marker + ".pid")
}

// Marks is the marker protocol as a value, for callers that declare it
// in an interface (package grant).
type Marks struct{}

func (Marks) ReadMark(marker string) Mark { return ReadMark(marker) }
func (Marks) WaitMark(ctx context.Context, marker string, until time.Time) Mark {
	return WaitMark(ctx, marker, until)
}
func (Marks) RemoveMark(marker string) { RemoveMark(marker) }
