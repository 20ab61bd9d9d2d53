// Package trust decides whether Sesame may trust a file it acts on as
// root (the state directory with the grants journal, stop markers and the
// last good config; the control socket's directory): only root, or the
// daemon's own user, can have written it. It checks owners and modes and
// changes nothing; the caller refuses to start with the error, which says
// what is wrong and how to fix it.
package trust

import "errors"

// ErrUntrusted is wrapped by every refusal.
var ErrUntrusted = errors.New("untrusted")
