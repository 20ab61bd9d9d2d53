package sshknock

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformed means a datagram is not a well-formed version-1 knock.
	ErrMalformed = errors.New("sshknock: malformed packet")
	// ErrTooLarge means a knock would not fit in MaxPacket bytes.
	ErrTooLarge = errors.New("sshknock: packet too large")
	// ErrNoKey means no signing key matched (agent empty, --key unmatched).
	ErrNoKey = errors.New("sshknock: no matching key")
	// ErrAmbiguousKey means several agent keys matched and none was chosen.
	ErrAmbiguousKey = errors.New("sshknock: several keys match")
)

// LineError is a problem at one line of an authorized_keys file; ParseKeys
// joins one per problem.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }
