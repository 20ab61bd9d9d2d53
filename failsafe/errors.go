package failsafe

import "errors"

var (
	// ErrNotConfigured is returned by Open and Close when no rescue port
	// is configured: there is nothing to open or close.
	ErrNotConfigured = errors.New("no rescue port configured")
	// ErrBadOptions wraps every rejection of Options by New.
	ErrBadOptions = errors.New("invalid rescue options")
	// ErrNoBackend is returned when the firewall family cannot carry a
	// rescue (no nf_tables, no ipset binary, not Linux).
	ErrNoBackend = errors.New("rescue unavailable in this firewall")
)
