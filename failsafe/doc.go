// Package failsafe owns Sesame's optional fail-open rescue: a kernel dead
// man's switch that admits the Rescue_Ports (from Rescue_From only, when
// set) once sesamed has not refreshed a heartbeat for Rescue_After, so a
// killed, frozen or never-restarted daemon cannot lock admins out. It
// installs the rule and the heartbeat in the grants' firewall family
// (nftables, or iptables with an ipset), refreshes or drops the heartbeat
// and logs rescue-open/rescue-close; it does not decide whether the daemon
// is healthy (the supervisor does) and never edits the admin's rules.
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
// # nftables: what the admin must allow
//
// On nftables an accept cannot override a drop in another chain: every
// base chain decides separately, a drop anywhere is final, and an accept
// in an earlier-priority chain does not stop a later one from dropping
// (checked on this kernel). So, exactly as for the ports doors open, the
// admin's own ruleset must accept the rescue ports, for example
//
//	tcp dport { 22, 2222 } accept
//
// and Sesame decides who gets through, in table inet sesame:
//
//   - base chain rescue (hook input, priority filter - 20) sends packets
//     to a rescue port to rescue_gate;
//   - rescue_gate: heartbeat present (set rescue_alive) → rescue_closed;
//     else a source in Rescue_From → rescue_admit; else → rescue_closed;
//   - rescue_closed lets through established connections, loopback and
//     sources holding a grant, and drops the rest: a rescue port is closed
//     while Sesame is healthy even if no door opens it;
//   - rescue_admit accepts. Because a rescue port is often one a door
//     opens too, and core/firewall's chain guard (priority filter - 10)
//     drops everyone not in its grant sets allow4/allow6, rescue_admit
//     first adds the source to those sets from the packet path (an nft
//     dynamic set add, 500 ms timeout); guard, which runs after it, then
//     lets the packet through. The add never touches an existing element,
//     so a real grant's deadline is never shortened; the elements carry
//     no comment, so core/firewall ignores them. The rescue creates
//     allow4/allow6 with exactly core/firewall's shape when they are
//     missing, and leaves them to it.
//
// `nft list table inet sesame` shows the heartbeat as elements of set
// rescue_alive with `expires`.
//
// # iptables: nothing for the admin to do
//
// On iptables (iptables-nft or iptables-legacy, as the grants use) the
// heartbeat is an ipset, `bitmap:port` keyed on the rescue port numbers,
// and a chain SESAME-RESCUE, jumped to from the top of INPUT right after
// core/firewall's own `-j SESAME`, holds
//
//	-A SESAME-RESCUE [-s PREFIX] -p tcp -m multiport --dports 22 \
//	    -m set ! --match-set sesame-rescue dst -j ACCEPT
//
// An ACCEPT at the top of filter INPUT is final there, ahead of the
// admin's DROP policy; the one set serves IPv4 and IPv6. Tools that later
// insert rules above the jumps (fail2ban) decide first; Sesame warns once
// and does not fight them.
//
// # Holding it open, and systemd
//
// `sesame rescue open` removes the heartbeat and adds a hold marker (port
// 0 in the same set, which no packet matches): a healthy daemon does not
// refresh while it is there. `sesame rescue close`, or the daemon's next
// Start, removes it and refreshes. The unit runs `sesame rescue open
// --quiet` from ExecStopPost= when $SERVICE_RESULT is not success, so a
// failing daemon opens the rescue at once instead of after Rescue_After.
// A clean stop leaves the heartbeat to lapse: the rescue opens
// Rescue_After after `systemctl stop`.
//
// # What the supervisor calls
//
//   - New(opts) with the grants backend's resolved kind (or Auto), then
//     Start(ctx) once every component is up, at READY=1;
//   - Tick(ctx, healthy, why) every Interval(), healthy only when every
//     component is; Summary() for STATUS=;
//   - after a config reload, New with the new config and Install(ctx),
//     then Tick the new Switch (Install keeps the heartbeat and a hold);
//   - a Switch without Rescue_Ports still gets Start/Install: it removes
//     a rescue an earlier config left, which would otherwise lapse open.
package failsafe
