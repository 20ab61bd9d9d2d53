package rescue

import "errors"

// ErrNotConfigured is returned by Open and Close when no rescue port is
// configured: there is nothing to open or close.
var ErrNotConfigured = errors.New("no rescue port configured")
