package verify

import "strconv"

// Reason is why a packet was refused, or Accepted. The constants after
// BadHMAC are in the order fwknopd checks an authenticated packet; when
// every stanza refuses a packet, the verdict carries the reason of the
// stanza it got furthest with.
type Reason uint8

const (
	Accepted         Reason = iota
	NotSPA                  // not an SPA packet at all (length, alphabet)
	SourceNotAllowed        // no stanza's SOURCE (and DESTINATION) matches
	Replay                  // the packet was used before
	BadHMAC                 // no matching stanza's HMAC key authenticates it
	StanzaExpired           // it authenticated for a stanza past its ACCESS_EXPIRE
	Undecryptable           // authenticated, but does not decrypt with the stanza's key and mode
	BadDigest               // decrypted, but the digest inside does not match
	Malformed               // decrypted and digest right, but a field is invalid
	Stale                   // its timestamp is more than the maximum age from now
	SourceRequired          // REQUIRE_SOURCE_ADDRESS, and it asks for its source (fwknop -s)
	UserNotAllowed          // REQUIRE_USERNAME names another user
	NATRefused              // a NAT access message (not supported)
	CommandRefused          // a command message (not supported)
	PortNotAllowed          // a port outside OPEN_PORTS, in RESTRICT_PORTS, or not tcp/udp
	CacheFull               // the replay cache is full (fails closed)
)

var reasonNames = [...]string{
	Accepted: "accepted", NotSPA: "not SPA", SourceNotAllowed: "source not allowed", Replay: "replay",
	BadHMAC: "bad HMAC", StanzaExpired: "expired stanza", Undecryptable: "undecryptable",
	BadDigest: "bad digest", Malformed: "malformed", Stale: "stale", SourceRequired: "source address required",
	UserNotAllowed: "user not allowed", NATRefused: "NAT refused", CommandRefused: "command refused",
	PortNotAllowed: "port not allowed", CacheFull: "replay cache full",
}

// String is the reason as logs show it ("bad HMAC", "stale", ...).
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}
