package eventlog

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

func devIno(t *testing.T, fi os.FileInfo) string {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no stat for %s", fi.Name())
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
