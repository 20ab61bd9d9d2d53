package sshknock

import "errors"

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
