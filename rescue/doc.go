// Package rescue owns the policy of Sesame's optional fail-open rescue: a
// kernel dead man's switch that admits the Rescue_Ports (from Rescue_From
// only, when set) once sesamed has not refreshed a heartbeat for
// Rescue_After, so a killed, frozen or never-restarted daemon cannot lock
// admins out. A Switch decides, from what the kernel holds and whether the
// daemon is healthy, when to refresh the heartbeat, let it lapse, open,
// close or reinstall the rescue, and logs rescue-open/rescue-close; Keep
// is its heartbeat loop. It touches no firewall itself (it imports no
// firewall library): core/firewall's Rescue, behind the Firewall
// interface, owns the rule, the heartbeat elements and the hold marker in
// nftables or iptables with an ipset. It does not decide whether the
// daemon is healthy (the daemon does) and never edits the admin's rules.
//
// # README-rescue: the rescue port
//
//	[options]
//	    Rescue_Ports = 22/tcp
//	    Rescue_After = 30
//	    Rescue_From  = 203.0.113.0/24, 2001:db8::/32
//
// While sesamed is healthy it refreshes, every Rescue_After/3, a heartbeat
// element that the kernel expires on its own Rescue_After seconds later.
// Nothing has to be running for the rescue to open: when the element
// lapses, the kernel admits new connections to the rescue ports; the next
// healthy refresh closes them again (connections already open stay
// open). The trade-off: whoever can crash or freeze Sesame can open the
// rescue port, so make it a port whose service authenticates on its own
// (SSH), and narrow it with Rescue_From. Off unless Rescue_Ports is set.
//
// The rescue lives in the grants' firewall family. On nftables the
// admin's own ruleset must accept the rescue ports, exactly as for the
// ports doors open; on iptables there is nothing for the admin to do.
// core/firewall's package doc shows the objects in each family.
//
// # Holding it open, and systemd
//
// `sesame rescue open` removes the heartbeat and adds a hold marker: a
// healthy daemon does not refresh while it is there. `sesame rescue
// close`, or the daemon's next Start, removes it and refreshes. The unit
// runs `sesame rescue open --if-failed --quiet` from ExecStopPost=, which
// acts when $SERVICE_RESULT is not success: a failing daemon opens the
// rescue at once instead of after Rescue_After.
//
// A clean stop (`systemctl stop`, SIGTERM) disarms the rescue: the daemon
// removes its objects, so a planned stop never opens the rescue ports to
// the world Rescue_After later, and says so at warning. A rescue an admin
// holds open stays open. The next start installs it again, closed. A
// failure never disarms: a crash, a hang or a stop that fails or times
// out leaves the heartbeat to lapse, and ExecStopPost opens it at once.
//
// # What the daemon calls
//
//   - firewall.NewRescue with the grants backend's resolved kind (or the
//     config's), then New, then Start once every component is up, at
//     READY=1;
//   - Keep, with the Switch in force and the components' health: it Ticks
//     every Interval, healthy only when every component is; Summary for
//     STATUS=;
//   - after a config reload, a new Switch and Install; Keep picks it up
//     (Install keeps the heartbeat and a hold);
//   - on a clean stop, after Keep has returned, Disarm;
//   - a Switch without Rescue_Ports still gets Start/Install: it removes
//     a rescue an earlier config left, which would otherwise lapse open.
package rescue
