package eventlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/sesame-knock/sesame/core/event"
)

// pipeStream returns a pipe whose write end plays systemd's journal
// stream: JOURNAL_STREAM names its device and inode.
func pipeStream(t *testing.T) (r, w *os.File, env string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	st, err := w.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return r, w, devIno(t, st)
}

// readAll closes the write end and returns what reached the pipe.
func readAll(t *testing.T, r, w *os.File) string {
	t.Helper()
	w.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStderrDiscardedWhenItIsTheJournal(t *testing.T) {
	tests := []struct {
		name        string
		env         func(real string) string
		reachable   bool
		wantStderr  bool
		wantJournal bool
	}{
		{"journal stream and journald", func(real string) string { return real }, true, false, true},
		{"no JOURNAL_STREAM", func(string) string { return "" }, true, true, true},
		{"JOURNAL_STREAM names another file", func(string) string { return "1:1" }, true, true, true},
		{"malformed JOURNAL_STREAM", func(string) string { return "garbage" }, true, true, true},
		{"journal stream but journald unreachable", func(real string) string { return real }, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fj := useFakeJournald(t, tt.reachable)
			r, w, env := pipeStream(t)
			t.Setenv("JOURNAL_STREAM", tt.env(env))
			l, err := New(Options{Stderr: w})
			if err != nil {
				t.Fatal(err)
			}
			l.Info("10.0.0.2: ssh: OPEN SESAME", event.KeyKind, event.Open)
			l.Close()
			out := readAll(t, r, w)
			if got := strings.Contains(out, "OPEN SESAME"); got != tt.wantStderr {
				t.Errorf("entry on stderr = %v, want %v; stderr:\n%s", got, tt.wantStderr, out)
			}
			if !tt.wantStderr && out != "" {
				t.Errorf("stderr should be silent, got:\n%s", out)
			}
			var opens int
			for _, e := range fj.take() {
				if e.msg == "10.0.0.2: ssh: OPEN SESAME" {
					opens++
				}
			}
			if (opens == 1) != tt.wantJournal || opens > 1 {
				t.Errorf("journald got the entry %d times, want %v", opens, tt.wantJournal)
			}
		})
	}
}

// When stderr is the journal and a send fails, the entry goes to stderr
// (which systemd also puts in the journal) instead of being lost.
func TestJournaldFailureFallsBackToStderr(t *testing.T) {
	fj := useFakeJournald(t, true)
	r, w, env := pipeStream(t)
	t.Setenv("JOURNAL_STREAM", env)
	l, err := New(Options{Stderr: w})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("before")
	fj.setFail(true)
	l.Info("during 1", event.KeyKind, event.Stage)
	l.Info("during 2")
	fj.setFail(false)
	l.Info("after")
	out := readAll(t, r, w)
	for _, want := range []string{"during 1: event=stage", "during 2", "journald: send failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"before", "after"} {
		if strings.Contains(out, not) {
			t.Errorf("stderr has %q although journald took it:\n%s", not, out)
		}
	}
	if n := strings.Count(out, "send failed"); n != 1 {
		t.Errorf("failure reported %d times on stderr, want once", n)
	}
	var msgs []string
	for _, e := range fj.take() {
		msgs = append(msgs, e.msg)
	}
	if got := strings.Join(msgs, "|"); got != "before|after|journald: sending works again; entries in between went to stderr" {
		t.Errorf("journald got %q", got)
	}
}

// isJournalStream applies go-systemd's rule; on fd 2 it must agree with
// journal.StderrIsJournalStream.
func TestIsJournalStreamAgreesWithGoSystemd(t *testing.T) {
	st, err := os.Stderr.Stat()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", devIno(t, st), "1:1", "0:0"} {
		t.Setenv("JOURNAL_STREAM", env)
		want, werr := journal.StderrIsJournalStream()
		got, gerr := isJournalStream(os.Stderr)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("JOURNAL_STREAM=%q: ours %v %v, go-systemd %v %v", env, got, gerr, want, werr)
		}
		if env == devIno(t, st) && !got {
			t.Errorf("JOURNAL_STREAM=%q naming fd 2 not recognised", env)
		}
	}
	if got, _ := isJournalStream(&bytes.Buffer{}); got {
		t.Error("a buffer is not the journal")
	}
}

func devIno(t *testing.T, fi os.FileInfo) string {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no stat for %s", fi.Name())
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
