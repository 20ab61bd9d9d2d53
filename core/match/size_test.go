package match

import (
	"testing"
	"unsafe"
)

func TestAttemptSize(t *testing.T) {
	if n := unsafe.Sizeof(attempt{}); n != 64 {
		t.Errorf("attempt is %d bytes, want 64", n)
	}
}
