package firewall

import "errors"

var (
	// ErrInvalidGrant wraps every rejection of a malformed Grant (bad ID,
	// no source, no ports, a port that is not TCP/UDP 1-65535, no deadline).
	ErrInvalidGrant = errors.New("invalid grant")
	// ErrExpired is returned by Grant when the deadline is not after now;
	// nothing is changed (a zero kernel timeout would mean "forever").
	ErrExpired = errors.New("deadline already passed")
	// ErrTooManyClaims is returned when more grants share one kernel entry
	// (same source, protocol and ports) than its comment can name.
	ErrTooManyClaims = errors.New("too many grants share one firewall entry")
	// ErrNotSetUp is returned by EnsureBase before Setup has run.
	ErrNotSetUp = errors.New("backend not set up")
	// ErrMixedFirewalls is returned by Detect when the admin's input rules
	// live in more than one firewall: an accept in one cannot open a port
	// that a drop in another closes.
	ErrMixedFirewalls = errors.New("admin rules found in more than one firewall")
	// ErrNoFirewall is returned by Detect when neither nf_tables nor
	// iptables-legacy is usable.
	ErrNoFirewall = errors.New("no usable firewall")
	// ErrFamilyUnavailable is returned for a grant whose address family the
	// backend could not set up (an IPv6 grant on a host without ip6tables).
	ErrFamilyUnavailable = errors.New("address family not available")
	// ErrInvalidRescue wraps every rejection of a RescueSpec by NewRescue.
	ErrInvalidRescue = errors.New("invalid rescue")
	// ErrNoRescue is returned by NewRescue when the firewall family cannot
	// carry a rescue (no ipset binary, not Linux).
	ErrNoRescue = errors.New("rescue unavailable in this firewall")
	// ErrNoRescuePorts is returned by the changes of a Rescue that is off.
	ErrNoRescuePorts = errors.New("no rescue ports")
)
