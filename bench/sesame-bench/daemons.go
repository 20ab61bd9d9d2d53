package main

import (
	"fmt"
	"strings"
)

// The configurations under test. knockd and sesamed read the very same
// file for the shell rows; the native rows are Sesame-only (knockd has no
// native grants).

const (
	protectedPort = 2222
	doorSequence  = "7000,8000,9000"
	// The flood doors, in the config only for the replay and one-port
	// floods: their commands do nothing, their grants are what is
	// measured (journal, extensions, log lines).
	replaySequence = "7100,7200,7300"
	openSequence   = "7400"
	floodPort      = 2223 // what a native flood door opens
)

// Firewall actions: a shell start command, or one of Sesame's backends.
const (
	actShell          = "shell"
	actIPTablesNFT    = "iptables-nft"
	actIPTablesLegacy = "iptables-legacy"
	actNFTables       = "nftables"
)

// variant is one daemon with one way of opening the door.
type variant struct {
	Daemon string // "knockd" or "sesamed"
	Action string
}

func (v variant) String() string {
	if v.Action == actShell {
		return v.Daemon + ", shell `iptables -I`"
	}
	return v.Daemon + ", native " + v.Action
}

// key names v on the command line (--latency): "sesamed-iptables-nft".
func (v variant) key() string { return v.Daemon + "-" + v.Action }

var (
	knockdShell    = variant{"knockd", actShell}
	sesameShell    = variant{"sesamed", actShell}
	sesameIPTNFT   = variant{"sesamed", actIPTablesNFT}
	sesameIPTLeg   = variant{"sesamed", actIPTablesLegacy}
	sesameNFTables = variant{"sesamed", actNFTables}
)

// latencyVariants are the knock-to-connect rows, in the report's order.
var latencyVariants = []variant{knockdShell, sesameShell, sesameIPTNFT, sesameIPTLeg, sesameNFTables}

// config is the knockd.conf both daemons read. dir holds the log file.
// floodDoors adds the replay and one-port doors. fifo, when set, is
// where the shell's start command first echoes the knocker's address
// (see stamps).
func (v variant) config(dir string, floodDoors bool, fifo string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[options]\n\tInterface = %s\n\tLogFile = %s/knock.log\n", serverIf, dir)
	if v.Action != actShell {
		fmt.Fprintf(&b, "\tFirewall = %s\n", v.Action)
	}
	fmt.Fprintf(&b, "[bench]\n\tsequence = %s\n\tseq_timeout = 5\n\ttcpflags = syn\n", doorSequence)
	if v.Action == actShell {
		// iptables is Debian's alternative (iptables-nft); the lockdown below
		// uses the same binary, so the accept lands where the drop is.
		stamp := ""
		if fifo != "" {
			stamp = stampCommand(fifo) + "; "
		}
		fmt.Fprintf(&b, "\tstart_command = %s/usr/sbin/iptables -I INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT\n", stamp, protectedPort)
		fmt.Fprintf(&b, "\tstart_command_6 = %s/usr/sbin/ip6tables -I INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT\n", stamp, protectedPort)
	} else {
		fmt.Fprintf(&b, "\tOpen = %d/tcp\n\tOpen_Timeout = 600\n", protectedPort)
	}
	if floodDoors {
		for _, d := range []struct{ name, seq string }{{"replay", replaySequence}, {"oneport", openSequence}} {
			fmt.Fprintf(&b, "[%s]\n\tsequence = %s\n\tseq_timeout = 5\n\ttcpflags = syn\n\tcmd_timeout = 30\n", d.name, d.seq)
			if v.Action == actShell {
				b.WriteString("\tstart_command = /bin/true\n\tstop_command = /bin/true\n")
			} else {
				fmt.Fprintf(&b, "\tOpen = %d/tcp\n\tOpen_Timeout = 30\n", floodPort)
			}
		}
	}
	return b.String()
}

// floodSequence is the sequence a flood of mode sends.
func floodSequence(mode string) string {
	switch mode {
	case modeFloodReplay:
		return replaySequence
	case modeFloodOpen:
		return openSequence
	}
	return doorSequence
}

// adminNFT is a native nftables host's own ruleset: policy drop, with the
// one accept for the port Sesame guards (see core/firewall's doc).
var adminNFT = fmt.Sprintf(`table inet filter {
	chain input {
		type filter hook input priority 0; policy drop;
		iif lo accept
		ct state established,related accept
		meta l4proto ipv6-icmp accept
		tcp dport %d accept
	}
}
`, protectedPort)

// lockdown returns the commands that give the server namespace a DROP
// input policy in the firewall v's grants go to, and the nft script to
// load (nftables only).
func (v variant) lockdown() (cmds [][]string, nft string) {
	tools := []string{"iptables", "ip6tables"}
	switch v.Action {
	case actNFTables:
		return nil, adminNFT
	case actIPTablesNFT:
		tools = []string{"iptables-nft", "ip6tables-nft"}
	case actIPTablesLegacy:
		tools = []string{"iptables-legacy", "ip6tables-legacy"}
	}
	for _, t := range tools {
		cmds = append(cmds,
			[]string{t, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"},
			[]string{t, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"})
		if strings.HasPrefix(t, "ip6") {
			cmds = append(cmds, []string{t, "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT"})
		}
		cmds = append(cmds, []string{t, "-P", "INPUT", "DROP"})
	}
	return cmds, ""
}

// argv is the daemon's command line. verbose makes knockd print its
// events on stdout (sesamed prints them at its default level).
func (v variant) argv(bin, dir string, verbose bool) []string {
	if v.Daemon == "knockd" {
		a := []string{"knockd", "-c", dir + "/knockd.conf", "-i", serverIf}
		if verbose {
			a = append(a, "-v")
		}
		return a
	}
	return []string{bin, "-c", dir + "/knockd.conf", "-i", serverIf,
		"--state-dir", dir + "/state", "--socket", dir + "/control.sock"}
}
