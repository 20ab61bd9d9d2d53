// Package supervisor is a small supervision library: it runs components
// (suture) that prove they are alive by beating (Heartbeats), restarts the
// ones that fail, panic or go silent, and escalates to process exit when
// restarting does not help; it tells systemd about readiness, reloads and
// status (Notifier) and pings its watchdog only while every component is
// healthy (Watchdog). It does not know what the components do and imports
// nothing of Sesame's: the daemon that uses it is internal/daemon.
package supervisor
