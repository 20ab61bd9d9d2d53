// Package sshknock owns Sesame's SSH-signed knocks: the packet (one UDP
// datagram signed with an SSH key in OpenSSH's SSHSIG format, see
// FORMAT.md), the authorized_keys file that says which keys may open what,
// the server's Verifier (a pure function of packet, source and time, with
// signature budgets and a replay cache it is handed), and the client's
// Build and Send. It does not capture packets, journal, grant or log:
// the daemon does, with the Request a Verifier returns.
package sshknock
