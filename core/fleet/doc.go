// Package fleet shares grants with a group of Sesame nodes through etcd:
// it publishes this node's grants, extends and revokes them, lists the
// group's, and watches the group to hand every other node's grants to a
// Consumer. It does not apply grants (the Consumer does, with its own
// firewall backend and journal) and keeps no state on disk (a Store
// tells it the revision to resume from).
//
// # Keys and values
//
// A grant lives at /sesame/<group>/grants/<grant id>, its value one JSON
// object, format version 1:
//
//	{"v":1,"id":"187a3f0c2b9d4e10a1b2c3d4e5f60718","door":"ssh",
//	 "source":"203.0.113.7","ports":["22/tcp"],
//	 "deadline":"2026-11-30T09:17:28.5Z","origin":"bastion-3",
//	 "identity":"alice"}
//
// Parse refuses anything else (unknown or repeated members, nulls, another
// version, bad fields, trailing data) with a *ValueError. The key holds an
// etcd lease of deadline + LeaseSlack; the absolute deadline in the value,
// not the lease, ends the grant on every node (leases are extended across
// leader changes, so their expiry is late, never early). Nodes need
// synchronised clocks (NTP), as the deadline is wall-clock time.
// A revoked grant leaves /sesame/<group>/revoked/<grant id> on the
// grant's own lease, so it cannot be published again while it would
// still be live.
//
// # Publishing exactly once
//
// The origin node journals a grant before anything else, applies it
// locally, then calls Publish; after Publish returns nil it journals the
// grant as confirmed. Publish creates the key in one transaction that
// requires neither the key nor its revocation marker to exist, so it can
// be called any number of times for one grant id: after a crash, the
// restarting node calls Publish for every journaled, unconfirmed grant
// still before its deadline. If the earlier call landed, nothing is
// written again; if someone revoked the grant meanwhile, Publish returns
// ErrRevoked and the node revokes its local copy; if it never landed, it
// lands now. No grant is applied locally but lost to the group, and none
// is published twice.
//
// Extend writes the later deadline on a fresh lease (see Extend for why
// not a keepalive). Revoke deletes the key and writes the marker in one
// transaction; every node's watcher then sees the delete.
//
// # Watching
//
// Run watches the prefix from the revision after the Store's and calls
// Consumer.FleetChanges per etcd watch response. Without a revision, and
// when etcd has compacted the history it needs (ErrCompacted), it lists
// the group and calls Consumer.FleetSnapshot with the live set, so a
// node that was away drops what was revoked meanwhile and applies what is
// still live. It reconnects with jittered exponential backoff, probes for
// a quorum every ProbeInterval and reports Status (connected, revision
// applied, lag).
//
// # Security
//
// Whoever can write /sesame/<group>/ can open that group's doors. Nodes
// trust only what comes through their authenticated etcd connection
// (mutual TLS with Fleet_CA, Fleet_Cert, Fleet_Key); restrict the prefix
// with etcd's role-based access control (a role with readwrite on the
// prefix /sesame/<group>/, granted to the user named by the nodes'
// certificate common name).
package fleet
