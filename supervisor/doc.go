// Package supervisor owns the daemon's process-level plumbing: running the
// capture worker and the matcher/executor as supervised components with
// heartbeats, proving their health to systemd (sd_notify readiness, reload
// and watchdog), noticing config file changes and network link/address
// changes. It does not know what the components do: knock matching, grants
// and firewall work live in core/.
package supervisor
