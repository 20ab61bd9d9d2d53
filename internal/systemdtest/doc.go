// Package systemdtest boots a real systemd as PID 1 of private PID, mount,
// network, UTS, IPC and cgroup namespaces, for end-to-end tests of units
// (Type=notify readiness, reload, watchdog, restarts) on machines where
// systemd is not PID 1. It owns that namespace's lifetime and everything
// it needs on the host (one child cgroup); it does not build or know
// about Sesame's binaries, which tests hand in as files.
//
// Nothing the booted system does may reach the host. The root is an
// overlay of the host's root filesystem with a tmpfs upper layer, so
// every write (units, /etc, /var/log/journal, /tmp) lands in memory; /run,
// /tmp, /var/tmp, /dev and /dev/shm are fresh tmpfs; /sys and /proc/sys
// are read-only (except the namespaced /proc/sys/net); cgroups live under
// a child cgroup the harness creates and removes; systemd runs in
// container mode (no swap, loop or DM teardown, no clock or printk
// changes) without CAP_SYS_MODULE, CAP_SYS_TIME and other host-wide
// capabilities; static .wants links and generators are disabled, so the
// boot starts journald and the units under test, nothing else. It powers
// off with `systemctl poweroff`, never a broad kill.
package systemdtest
