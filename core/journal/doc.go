// Package journal owns Sesame's durable record of open grants: an
// append-only log in a state directory, one checksummed record per grant,
// extension, end of a start command, revoke intent and revocation (or an
// admin's "forget"), and the replay digests of accepted SPA packets (kept
// until they expire, also after their grants end), each fsynced before
// the call returns, compacted when it is mostly dead records. For fleet
// grants it also keeps whether the group confirmed each shared grant,
// where each received grant came from, and the last fleet revision
// applied. It does not decide
// when a grant ends or run anything; the grant manager replays Pending at
// start and acts on it.
//
// A Grant record is durable before the grant's start command runs. For a
// grant that only opens ports in a firewall that expires it in the kernel
// (nftables timeouts, iptables --datestop), the grant manager writes the
// record while it applies the grant, not before (package grant's doc): a
// crash before the record is durable cannot leak that door past its
// deadline, since the kernel closes it then on its own.
//
// # File format
//
// DIR/grants.log is a sequence of frames:
//
//	magic   4 bytes  FF 53 4A 31 ("\xffSJ1")
//	crc     4 bytes  CRC-32C (Castagnoli), little endian, over length|type|payload
//	length  4 bytes  payload length, little endian, at most MaxPayload
//	type    1 byte   1 grant, 2 extend, 3 revoking, 4 revoked, 5 started, 6 replay,
//	                 7 published (a fleet confirmed a shared grant),
//	                 8 fleet revision (the last change of the fleet applied)
//	payload length bytes of JSON
//
// The payload is JSON because records are small and written at the rate
// people knock, so encoding cost is nothing next to the fsync, while
// `strings grants.log` shows an operator what is pending and optional
// fields can be added without a version bump. JSON from encoding/json is
// always valid UTF-8, and 0xFF never occurs in UTF-8, so the magic cannot
// appear inside a payload: after a corrupt frame the reader resyncs by
// searching for the next magic whose frame checks out, and keeps every
// later good record. A corrupt or torn tail (anything after the last good
// frame) is logged with its offset and reason and cut off by Open before
// the next append; bad frames in the middle are skipped and logged, and
// Open rewrites the log (compaction) so they do not linger.
package journal
