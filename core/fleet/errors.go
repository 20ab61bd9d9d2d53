package fleet

import "errors"

var (
	// ErrBadValue is matched (errors.Is) by every *ValueError: a grant key
	// or value that does not parse, refused.
	ErrBadValue = errors.New("bad fleet grant value")
	// ErrUnsupportedVersion is wrapped by a *ValueError whose value has a
	// format version this Sesame does not read.
	ErrUnsupportedVersion = errors.New("unsupported grant format version")
	// ErrExpired is returned by Publish and Extend for a deadline that is
	// not in the future: there is nothing to share.
	ErrExpired = errors.New("grant deadline already passed")
	// ErrRevoked is returned by Publish when the grant was revoked in the
	// fleet (its revocation marker is still live): the caller must revoke
	// it locally instead of publishing it again.
	ErrRevoked = errors.New("grant was revoked in the fleet")
	// ErrNotFound is returned by Extend and Revoke when the group holds no
	// such grant (never published, revoked, or its lease ran out).
	ErrNotFound = errors.New("no such fleet grant")
	// ErrConflict is returned when a change lost the race against other
	// writers of the same key more often than it retries.
	ErrConflict = errors.New("fleet grant changed concurrently")
	// ErrTLS is matched by errors whose cause is the TLS credentials: a
	// certificate the server does not accept or a server certificate that
	// Fleet_CA does not verify.
	ErrTLS = errors.New("fleet TLS credentials rejected")
	// ErrUnreachable is matched by errors of Check when no endpoint
	// answered in time for another reason (down, partitioned, no quorum).
	ErrUnreachable = errors.New("etcd unreachable")
	// ErrClosed is returned by calls on a closed Fleet.
	ErrClosed = errors.New("fleet closed")
)
