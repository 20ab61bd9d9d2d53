package spa

import "errors"

// Sentinel errors, one per stage of fwknopd's processing. Functions wrap
// them with detail; test with errors.Is.
var (
	// ErrNotSPA: the datagram cannot be an SPA packet (length, alphabet,
	// or a "Salted__" prefix an attacker added to get past the replay
	// check, which fwknopd also drops).
	ErrNotSPA = errors.New("not an SPA packet")
	// ErrBadHMAC: the HMAC does not match the packet.
	ErrBadHMAC = errors.New("bad HMAC")
	// ErrUndecryptable: the ciphertext does not decrypt to an SPA message
	// with this key and mode (bad base64, length or padding, or a
	// plaintext that does not start with 16 digits and a colon).
	ErrUndecryptable = errors.New("undecryptable")
	// ErrDigest: the digest inside the message does not match its fields.
	ErrDigest = errors.New("bad digest")
	// ErrMalformed: the message decrypted and its digest matched, but a
	// field is invalid.
	ErrMalformed = errors.New("malformed message")
)
