//go:build !linux

package eventlog

import "io"

// Only Linux has systemd's journal stream.
func isJournalStream(io.Writer) (bool, error) { return false, nil }
