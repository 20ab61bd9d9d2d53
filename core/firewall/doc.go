// Package firewall owns every kernel object Sesame makes: the native
// grants, which let a knocker's address reach a door's ports until a
// deadline, through iptables (a SESAME chain, iptables run as argv) or
// nftables (table inet sesame, via netlink), and the rescue's rule, heartbeat and
// hold marker (Rescue). It creates, inspects, repairs and removes them,
// picks the family that holds the admin's rules (Detect), and puts grants
// back after someone flushes the firewall (Reconcile). It is the only
// package that runs iptables or ipset or talks nf_tables. It does not
// decide who gets a grant or for how long, nor when the rescue opens
// (package rescue does), does not journal grants, and never edits the
// admin's own rules.
//
// # README-firewall: native grants
//
// A door with `Open = 22/tcp,443/tcp` makes Sesame grant the knocker's
// address those ports until the door's deadline, without start/stop
// commands. `[options] Firewall = auto|iptables|iptables-nft|iptables-legacy|nftables`
// chooses where; auto (Detect) looks for the admin's INPUT rules:
//
//   - iptables-legacy: rules or a non-ACCEPT policy in filter INPUT as
//     iptables-legacy-save / ip6tables-legacy-save show them;
//   - iptables-nft: input rules or an input drop policy in an nf_tables
//     table made by iptables-nft (ip/ip6 filter etc. with chains named
//     INPUT, FORWARD...);
//   - nftables: the same in any other nf_tables table;
//   - none of these: nftables when the kernel has nf_tables, else
//     iptables-legacy.
//
// Auto refuses to start when input rules live in more than one of these:
// an accept in one does not open what a drop in another closes. Rules that
// do not filter INPUT (FORWARD, nat, Docker's chains) are ignored.
//
// # iptables backends
//
// Sesame creates a SESAME chain in the filter table of iptables and
// ip6tables and inserts `-I INPUT 1 -j SESAME` once. Each grant is an
// ACCEPT rule there:
//
//	-A SESAME -s 203.0.113.7/32 -p tcp -m multiport --dports 22,443
//	   -m time --datestop 2025-11-27T21:40:59
//	   -m comment --comment "sesame id=ssh-1 until=1764279660" -j ACCEPT
//
// The admin's policy (`-P INPUT DROP`, or a final DROP) does the closing;
// Sesame only adds accepts in front of it. The comment names the grants
// that want the rule and their deadlines, so a restarted Sesame adopts or
// expires what it finds. Two grants for the same address and ports share
// one rule. The time match stops a rule matching at its deadline even if
// Sesame is not running; Reconcile deletes expired rules. If a tool later
// inserts its own rules above Sesame's jump (fail2ban does), those decide
// first; Sesame logs that and leaves them be.
//
// Sesame keeps the rules of its chain in memory and runs iptables once per
// change: `iptables -A SESAME ...` for a new grant, `iptables -D SESAME
// ...` for a revoke, and one `iptables-restore --noflush` (applied
// atomically) when a rule is replaced, as when a grant is extended. With
// iptables-nft a new grant's rules are appended over netlink instead, in
// one nf_tables transaction, written exactly as iptables-nft writes them
// (its expressions and nft_compat matches), so `iptables -S` lists them
// and `iptables -D` deletes them as its own: no iptables process on the
// knock's path. It
// lists the chain again (`iptables -S`), and puts back a missing chain or
// jump in the same restore as the grant, when a command fails or, with
// iptables-nft, when the nf_tables generation shows that something else
// changed a table since its own last command. iptables-legacy offers no
// such signal: a rule edited by hand there is noticed when a command on it
// fails, and at the latest by the next Reconcile.
//
// # nftables backend
//
// On a native nftables host an accept in Sesame's table cannot override a
// drop in the admin's table (every base chain decides separately and a
// drop anywhere wins), so Sesame guards the door ports itself:
//
//	table inet sesame {
//		set allow4  { type ipv4_addr . inet_proto . inet_service; flags timeout; }
//		set allow6  { type ipv6_addr . inet_proto . inet_service; flags timeout; }
//		set guarded { type inet_proto . inet_service; }   # every port any door opens
//		chain input { type filter hook input priority filter - 10; policy accept;
//			meta l4proto . th dport @guarded jump guard }
//		chain guard {
//			ct state established,related accept
//			meta iiftype loopback accept
//			ip saddr . meta l4proto . th dport @allow4 accept
//			ip6 saddr . meta l4proto . th dport @allow6 accept
//			counter drop
//		}
//	}
//
// Each grant is one element per port with a kernel timeout, so it expires
// at its deadline even if Sesame is dead (`nft list set inet sesame allow4`
// shows `expires`), and a comment naming the grants that want it. Sesame's
// accept only means "not dropped by Sesame": the admin's own ruleset must
// still accept the guarded ports, so keep exactly one rule for them in
// your input chain, for example
//
//	tcp dport { 22, 443 } accept
//
// and let Sesame decide who gets through. Established connections survive
// a grant's expiry; loopback is never guarded.
//
// A grant is one netlink batch. Before it Sesame reads the nf_tables
// generation and the allow set of the grant's family. When the generation
// is the one its own last batch left, nothing else changed any table
// since Sesame last found or made table inet sesame whole, and the table
// is not read again; when someone else committed (`nft flush ruleset`, a
// firewalld reload, the rescue's heartbeat) or the generation cannot be
// read, Sesame inspects the whole table and repairs it in the batch before
// the grant's. The allow set is read unless the grant's source has no
// element in it: Sesame knows the set's sources from its last read and
// its own batches for as long as the generation shows no one else's
// commit, and a source with none only needs adds (the common case: a
// knocker's first grant is the set-generation read plus one batch). A
// source that has an element makes Sesame read the set, because elements
// expire in the kernel without moving the generation and whether one is
// still there decides between adding it and replacing it. Reconcile
// always inspects.
//
// # Reconcile
//
// Reconcile(ctx, backend, live grants, now) recreates Sesame's chain and
// jump or table if they are gone (`iptables -F`, `nft flush ruleset`, a
// firewalld reload), restores missing grants and removes expired or
// unwanted ones, and reports what it did; for iptables it reads each
// family once and refreshes the in-memory chain with it. Teardown removes
// only Sesame's objects.
//
// # The rescue's objects
//
// Rescue keeps package rescue's dead man's switch in the grants' family:
// rules that admit the rescue ports (from Rescue_From only, when set)
// unless a heartbeat element is present, the heartbeat elements, which
// the kernel expires on its own After a refresh, and a hold marker that
// keeps the rescue open. It offers Install, Refresh, Open, Close, Remove
// and State; package rescue decides when to call them.
//
// On nftables an accept cannot override a drop in another chain (see
// above), so the admin's ruleset must accept the rescue ports, and Sesame
// decides who gets through, in table inet sesame:
//
//   - base chain rescue (hook input, priority filter - 20) sends packets
//     to a rescue port to rescue_gate;
//   - rescue_gate: heartbeat present (set rescue_alive) → rescue_closed;
//     else a source in Rescue_From → rescue_admit; else → rescue_closed;
//   - rescue_closed lets through established connections, loopback and
//     sources holding a grant, and drops the rest: a rescue port is closed
//     while Sesame is healthy even if no door opens it;
//   - rescue_admit accepts. Because a rescue port is often one a door
//     opens too, and chain guard (priority filter - 10) drops everyone
//     not in allow4/allow6, rescue_admit first adds the source to those
//     sets from the packet path (an nft dynamic set add, 500 ms timeout);
//     guard, which runs after it, then lets the packet through. The add
//     never touches an existing element, so a real grant's deadline is
//     never shortened; the elements carry no comment, so the grants
//     backend ignores them. The rescue creates allow4/allow6 when they are
//     missing, and leaves them to the grants backend.
//
// `nft list table inet sesame` shows the heartbeat as elements of set
// rescue_alive with `expires`; the hold marker is the element 0 . 0.
//
// On iptables (iptables-nft or iptables-legacy, as the grants use) the
// heartbeat is an ipset, `bitmap:port` keyed on the rescue port numbers,
// and a chain SESAME-RESCUE, jumped to from the top of INPUT right after
// the grants' own `-j SESAME`, holds
//
//	-A SESAME-RESCUE [-s PREFIX] -p tcp -m multiport --dports 22 \
//	    -m set ! --match-set sesame-rescue dst -j ACCEPT
//
// An ACCEPT at the top of filter INPUT is final there, ahead of the
// admin's DROP policy; the one set serves IPv4 and IPv6, and port 0 in it
// is the hold marker. Tools that later insert rules above the jumps
// (fail2ban) decide first; Sesame warns once and does not fight them.
package firewall
