package firewall

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Detection: where do the admin's input rules live? Probing (running
// iptables-legacy-save, listing nf_tables over netlink) is in
// detect_linux.go; turning what was found into a decision is here, pure,
// so that it can be tested as a table.

// xtView is one iptables flavour's filter INPUT chain as its save tool
// prints it, both families, minus Sesame's own jump and chain.
type xtView struct {
	Tool       string   // the save tools run, for the detail
	Available  bool     // false when the tools are not installed
	InputRules int      // rules in filter INPUT other than Sesame's jump
	Policies   []string // non-ACCEPT INPUT policies, e.g. "ip6tables INPUT DROP"
}

func (v xtView) hasInputRules() bool { return v.InputRules > 0 || len(v.Policies) > 0 }

// parseSave adds what one iptables-save output says about filter INPUT.
// label names the family in Policies ("iptables" or "ip6tables").
func (v *xtView) parseSave(out, label string) {
	table := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case table != ipTable:
		case strings.HasPrefix(l, ":"+ipInput+" "):
			if f := strings.Fields(l); len(f) >= 2 && f[1] != "ACCEPT" {
				v.Policies = append(v.Policies, label+" "+ipInput+" "+f[1])
			}
		case strings.HasPrefix(l, "-A "+ipInput+" ") && !isOwnJump(l):
			v.InputRules++
		}
	}
}

// nftTableView is one nf_tables table as detection needs it.
type nftTableView struct {
	Family string // ip, ip6, inet, arp, bridge, netdev
	Name   string
	// BaseChains are the names of its base chains; iptables-nft names
	// them after the hooks in capitals (INPUT, FORWARD...).
	BaseChains []string
	InputRules int  // rules in base chains hooked at input, minus jumps to SESAME
	InputDrop  bool // a base chain hooked at input has policy drop
}

var xtTableNames = []string{"filter", "nat", "mangle", "raw", "security", "broute"}
var xtChainNames = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"}

// isSesame reports whether the table is Sesame's own.
func (t nftTableView) isSesame() bool { return t.Family == "inet" && t.Name == nftTable }

// isXT reports whether iptables-nft (or arptables/ebtables-nft) made the
// table: one of their families and table names, with base chains named
// only as they name them. A native table of the same name whose chains
// are named like nft users name them ("input") is not.
func (t nftTableView) isXT() bool {
	if !slices.Contains([]string{"ip", "ip6", "arp", "bridge"}, t.Family) || !slices.Contains(xtTableNames, t.Name) {
		return false
	}
	for _, c := range t.BaseChains {
		if !slices.Contains(xtChainNames, c) {
			return false
		}
	}
	return true
}

func (t nftTableView) hasInputRules() bool { return t.InputRules > 0 || t.InputDrop }

func (t nftTableView) String() string {
	s := fmt.Sprintf("table %s %s", t.Family, t.Name)
	var what []string
	if t.InputRules > 0 {
		what = append(what, fmt.Sprintf("%d input rules", t.InputRules))
	}
	if t.InputDrop {
		what = append(what, "input policy drop")
	}
	if len(what) == 0 {
		what = append(what, "nothing on input")
	}
	return s + " (" + strings.Join(what, ", ") + ")"
}

// snapshot is everything the probes found.
type snapshot struct {
	Legacy       xtView
	NFTAvailable bool   // nf_tables answered over netlink
	NFTErr       string // why not, when it did not
	Tables       []nftTableView
}

// decide picks the backend that holds the admin's input rules:
//
//   - rules or a non-ACCEPT INPUT policy in iptables-legacy: iptables-legacy;
//   - input rules or an input drop policy in tables iptables-nft made: iptables-nft;
//   - the same in any other nf_tables table (not Sesame's): nftables;
//   - more than one of these: ErrMixedFirewalls, since an accept in one
//     does not open what a drop in another closes;
//   - none: nftables if the kernel has nf_tables, else iptables-legacy if
//     its tools are installed, else ErrNoFirewall.
//
// Rules elsewhere (FORWARD, nat, Docker's chains) do not count: they do not
// decide whether a knocker reaches a local port.
func decide(s snapshot) (Kind, string, error) {
	var found []string
	var kinds []Kind
	var notes []string
	if !s.Legacy.Available {
		notes = append(notes, "iptables-legacy tools not installed")
	} else if s.Legacy.hasInputRules() {
		what := fmt.Sprintf("iptables-legacy: %d INPUT rules", s.Legacy.InputRules)
		if len(s.Legacy.Policies) > 0 {
			what += ", policy " + strings.Join(s.Legacy.Policies, ", ")
		}
		found = append(found, what)
		kinds = append(kinds, IPTablesLegacy)
	}
	var xt, native []string
	for _, t := range s.Tables {
		switch {
		case t.isSesame():
		case !t.hasInputRules():
			notes = append(notes, "ignored "+t.String())
		case t.isXT():
			xt = append(xt, t.String())
		default:
			native = append(native, t.String())
		}
	}
	if len(xt) > 0 {
		found = append(found, "iptables-nft: "+strings.Join(xt, "; "))
		kinds = append(kinds, IPTablesNFT)
	}
	if len(native) > 0 {
		found = append(found, "nftables: "+strings.Join(native, "; "))
		kinds = append(kinds, NFTables)
	}
	if !s.NFTAvailable {
		notes = append(notes, "nf_tables unavailable: "+s.NFTErr)
	}
	detail := strings.Join(append(slices.Clone(found), notes...), "; ")
	switch {
	case len(kinds) > 1:
		return Auto, detail, fmt.Errorf("firewall: %w: %s; move the input rules into one of them, or set Firewall = explicitly",
			ErrMixedFirewalls, strings.Join(found, " and "))
	case len(kinds) == 1:
		return kinds[0], "admin input rules found: " + detail, nil
	case s.NFTAvailable:
		return NFTables, joinDetail("no admin input rules found, kernel has nf_tables", detail), nil
	case s.Legacy.Available:
		return IPTablesLegacy, joinDetail("no admin input rules found, no nf_tables, iptables-legacy installed", detail), nil
	}
	return Auto, detail, fmt.Errorf("firewall: %w: %s", ErrNoFirewall, detail)
}

func joinDetail(head, rest string) string {
	if rest == "" {
		return head
	}
	return head + "; " + rest
}

// detectTimeout bounds the probes New and NewRescue run for Auto.
const detectTimeout = 30 * time.Second

// probes gather what Detect decides on; tests swap them.
type probes struct {
	// save runs an iptables save tool and returns its output; an error
	// wrapping exec.ErrNotFound means the tool is not installed.
	save func(ctx context.Context, tool string) (string, error)
	// nft lists the nf_tables tables; an error means nf_tables is unusable.
	nft func(ctx context.Context) ([]nftTableView, error)
}

func detectWith(ctx context.Context, p probes) (Kind, string, error) {
	var s snapshot
	for _, t := range []struct{ tool, label string }{
		{"iptables-legacy-save", "iptables"},
		{"ip6tables-legacy-save", "ip6tables"},
	} {
		out, err := p.save(ctx, t.tool)
		if errors.Is(err, exec.ErrNotFound) {
			continue
		}
		if err != nil {
			return Auto, "", fmt.Errorf("firewall.Detect: %s: %w", t.tool, err)
		}
		s.Legacy.Available = true
		s.Legacy.parseSave(out, t.label)
	}
	tables, err := p.nft(ctx)
	if err != nil {
		s.NFTErr = err.Error()
	} else {
		s.NFTAvailable = true
		s.Tables = tables
	}
	return decide(s)
}
