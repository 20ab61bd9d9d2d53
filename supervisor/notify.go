package supervisor

import (
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// Notifier sends sd_notify(3) state changes to the service manager over
// $NOTIFY_SOCKET. Every method reads the environment at call time and never
// unsets it (unsetting would silently stop later watchdog pings), so one
// Notifier is safe for concurrent use by any goroutine.
//
// Outcomes of every method: nil when the message was sent, nil when the
// process is not running under systemd (no NOTIFY_SOCKET), and a wrapped
// error when the socket is set but the send failed.
type Notifier struct {
	log hclog.Logger
}

// NewNotifier returns a Notifier that logs sends at trace level to log
// (nil means hclog.NewNullLogger()).
func NewNotifier(log hclog.Logger) *Notifier {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Notifier{log: log}
}

// Enabled reports whether NOTIFY_SOCKET is set, i.e. whether messages go
// anywhere.
func (n *Notifier) Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Ready sends READY=1: startup, or a reload begun with Reloading, is done.
func (n *Notifier) Ready() error { return n.send("ready", daemon.SdNotifyReady) }

// Reloading sends RELOADING=1 together with MONOTONIC_USEC= in one
// datagram, as systemd requires for reload tracking. Call Ready when the
// reload has finished, whether or not it succeeded.
func (n *Notifier) Reloading() error {
	return n.send("reloading", daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
}

// Stopping sends STOPPING=1: the daemon has begun shutting down.
func (n *Notifier) Stopping() error { return n.send("stopping", daemon.SdNotifyStopping) }

// Status sends STATUS=s, the one-line text `systemctl status` shows.
// Newlines in s are replaced by spaces because they would end the field.
func (n *Notifier) Status(s string) error {
	return n.send("status", "STATUS="+strings.ReplaceAll(s, "\n", " "))
}

// Watchdog sends WATCHDOG=1, resetting the service's watchdog timer.
func (n *Notifier) Watchdog() error { return n.send("watchdog", daemon.SdNotifyWatchdog) }

func (n *Notifier) send(what, state string) error {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return fmt.Errorf("sd_notify %s to %s: %w", what, os.Getenv("NOTIFY_SOCKET"), err)
	}
	if sent {
		n.log.Trace("sd_notify sent", "state", state)
	}
	return nil
}
