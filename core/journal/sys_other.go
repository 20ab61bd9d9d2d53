//go:build !linux

package journal

import (
	"errors"
	"os"
)

// The daemon runs on Linux only; elsewhere the journal can be read
// (ReadPending) but not opened for writing.
func lockDir(path string) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

func datasync(f *os.File) error { return f.Sync() }
