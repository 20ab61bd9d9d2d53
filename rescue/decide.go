package rescue

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// kernelState is what the Firewall found in the kernel.
type kernelState struct {
	// Installed: every object the rescue needs is present, as wanted.
	Installed bool
	// Problems say what is missing or different when !Installed.
	Problems []string
	// Held: the hold marker is present (an admin opened the rescue).
	Held bool
	// Left is the least time left among the ports' heartbeat elements;
	// 0 when any of them is missing.
	Left time.Duration
}

// isOpen reports whether the kernel admits new connections to the rescue
// ports: the rules are in place and the heartbeat is missing.
func (k kernelState) isOpen() bool { return k.Installed && k.Left <= 0 }

// plan is what one tick does, decided from what the kernel holds and
// whether the daemon is healthy. It is pure so the decisions are tested as
// a table.
type plan struct {
	install bool // objects missing or damaged: (re)install first
	refresh bool // put the heartbeat back
	// logOpen, when set, is why the rescue is open now and was not
	// before: log rescue-open with it.
	logOpen string
	// logClose, when set, is why the rescue was open and closes now: log
	// rescue-close with it.
	logClose string
}

// Why the rescue opens, as logged and shown in STATUS.
const (
	reasonHeld      = "held open by an admin: sesame rescue open"
	reasonNoBeat    = "no heartbeat"
	reasonUnhealthy = "sesamed is unhealthy"
	reasonHealthy   = "sesamed is healthy again"
	// A lapse nobody logged: the process was frozen or starved, and
	// could not see the rescue open.
	reasonLapsed = "the heartbeat had lapsed (sesamed stopped, frozen or too slow) and is back"
)

// decide plans a tick. wasOpen is what was last logged; healthy says
// whether every component is healthy; why is the unhealthy component's
// complaint, for the log.
//
//   - held: never refresh; log open once.
//   - healthy: refresh; log close if it was open, or if the heartbeat
//     lapsed unseen (the process was frozen: the rescue was open).
//   - unhealthy: do not refresh; log open once the heartbeat has lapsed
//     (the kernel opened the rescue on its own) or the objects had to be
//     reinstalled (no heartbeat yet, so open at once).
//
// Missing objects are always reinstalled: a rescue that is not there
// cannot open.
func decide(k kernelState, healthy, wasOpen bool, why string) plan {
	p := plan{install: !k.Installed}
	switch {
	case k.Held:
		if !wasOpen {
			p.logOpen = reasonHeld
		}
	case healthy:
		p.refresh = true
		switch {
		case wasOpen:
			p.logClose = reasonHealthy
		case k.isOpen():
			p.logClose = reasonLapsed
		}
	case !wasOpen && (!k.Installed || k.Left <= 0):
		p.logOpen = reasonUnhealthy
		if why != "" {
			p.logOpen += ": " + why
		}
	}
	return p
}

// Status is the rescue as the kernel holds it.
type Status struct {
	Configured bool   // Rescue_Ports is set
	Backend    string // "nftables", "iptables-nft"...; "" when not configured
	Ports      []knock.Port
	From       []netip.Prefix // empty: everyone
	After      time.Duration
	// Installed: the rule, the sets and the jump are all in place. When
	// false, Problems says what is missing and the rescue cannot open.
	Installed bool
	Problems  []string
	// Open: new connections to the rescue ports are admitted now (no
	// heartbeat, or held open).
	Open bool
	// Held: an admin opened the rescue; the daemon does not refresh the
	// heartbeat until `sesame rescue close` or its next start.
	Held bool
	// Left is how long the heartbeat lasts without a refresh; 0 when open.
	Left time.Duration
	// Reason says why the rescue is open, when the Switch knows.
	Reason string
}

// String is the one-line form for sd_notify's STATUS= and `sesame rescue
// status`.
func (st Status) String() string {
	if !st.Configured {
		return "rescue off"
	}
	what := knock.FormatSequence(st.Ports)
	if len(st.From) > 0 {
		var fs []string
		for _, p := range st.From {
			fs = append(fs, p.String())
		}
		what += " from " + strings.Join(fs, ",")
	}
	switch {
	case !st.Installed:
		return fmt.Sprintf("rescue NOT INSTALLED (%s, %s): %s", what, st.Backend, strings.Join(st.Problems, "; "))
	case st.Open:
		reason := st.Reason
		switch {
		case st.Held:
			reason = reasonHeld
		case reason == "":
			reason = reasonNoBeat
		}
		return fmt.Sprintf("rescue OPEN: %s reachable (%s)", what, reason)
	}
	return fmt.Sprintf("rescue closed: %s opens %s after the last heartbeat (%s left)",
		what, st.After, st.Left.Round(100*time.Millisecond))
}
