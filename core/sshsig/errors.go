package sshsig

import "errors"

var (
	// ErrFormat means a signature blob or armor does not parse.
	ErrFormat = errors.New("sshsig: malformed signature")
	// ErrNamespace means the signature was made for another namespace.
	ErrNamespace = errors.New("sshsig: namespace does not match")
	// ErrHashAlg means the hash algorithm is not sha256 or sha512.
	ErrHashAlg = errors.New("sshsig: unsupported hash algorithm")
	// ErrAlgorithm means the signature algorithm is not acceptable for
	// the key (ssh-rsa with SHA-1, or a format that is not the key's).
	ErrAlgorithm = errors.New("sshsig: unacceptable signature algorithm")
	// ErrKeyType means the key type is not one this package verifies.
	ErrKeyType = errors.New("sshsig: unsupported key type")
	// ErrKeyMismatch means the signature names another public key.
	ErrKeyMismatch = errors.New("sshsig: signature is for another key")
	// ErrBadSignature means the signature does not verify.
	ErrBadSignature = errors.New("sshsig: signature does not verify")
	// ErrNoUserPresence means a FIDO signature lacks the user-presence
	// flag (nobody touched the token) and the policy requires it.
	ErrNoUserPresence = errors.New("sshsig: FIDO signature without user presence")
	// ErrNoUserVerification means a FIDO signature lacks the
	// user-verified flag (no PIN or biometric) and the policy requires it.
	ErrNoUserVerification = errors.New("sshsig: FIDO signature without user verification")
)
