// Package daemon is sesamed: a list of services, each pairing its start
// with its stop (control socket, journal, firewall, grants, reconcile
// loop, fleet membership, engine, supervisor, link monitor, captures,
// control server, config watcher, pid file, watchdog, readiness, rescue
// keeper, status), started in order and stopped in reverse; and the
// reload, which validates a new config, prepares every service for it
// and commits only when all of them accepted it. It owns the wiring, not
// the work: matching, grants, the firewall, the rescue's policy, etcd
// (core/fleet) and supervision live in their packages, and the kernel is
// reached through the deps a test can replace.
package daemon
