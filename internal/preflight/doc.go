// Package preflight checks, from a parsed config and without starting
// anything, what sesamed will need when it starts: that its LogFile,
// PidFile and one-time sequence files can be written (also under the
// sandbox of the systemd unit it runs in), that its SPA files (fwknop's
// access.conf, the authorized_keys of SSH-signed knocks) parse and can be
// read, that its interfaces exist, and that the firewall its native
// grants and rescue port need is there.
// `sesame check` and `sesamed --check` report what it finds, each problem
// with the file and line that caused it; what may become true later (an
// interface that is not up yet) is a warning.
//
// It reads the file system, the interfaces and the firewall (through
// core/firewall's detection), and changes none of them. It does not parse
// the config (package config does) nor decide anything the daemon does at
// run time.
package preflight
