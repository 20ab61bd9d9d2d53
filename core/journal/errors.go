package journal

import "errors"

var (
	// ErrLocked is returned by Open when another process holds the
	// journal's lock (another sesamed on the same state directory).
	ErrLocked = errors.New("journal is locked by another process")
	// ErrUnknownGrant is returned by Extend, Revoking and Revoked for an
	// id that is not a live grant.
	ErrUnknownGrant = errors.New("no such grant")
	// ErrDuplicate is returned by Grant for an id that is already live.
	ErrDuplicate = errors.New("grant id already live")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("journal is closed")
)
