package eventlog

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// isJournalStream reports whether w is the file systemd connected to the
// journal, as named by JOURNAL_STREAM ("DEV:INODE"). It applies
// go-systemd's journal.StderrIsJournalStream test to the writer actually
// used, which is os.Stderr in the daemon. Outcomes: (false, nil) when
// JOURNAL_STREAM is unset or w is not a file; an error when the variable
// is malformed or fstat fails.
func isJournalStream(w io.Writer) (bool, error) {
	env := os.Getenv("JOURNAL_STREAM")
	if env == "" {
		return false, nil
	}
	f, ok := w.(*os.File)
	if !ok {
		return false, nil
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil {
		return false, fmt.Errorf("parse JOURNAL_STREAM=%q: %w", env, err)
	}
	// Through SyscallConn rather than Fd, which would switch the
	// descriptor to blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil {
		return false, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	if serr != nil {
		return false, fmt.Errorf("fstat %s: %w", f.Name(), serr)
	}
	return uint64(st.Dev) == dev && st.Ino == ino, nil
}
