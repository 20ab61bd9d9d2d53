package firewall

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

var defaultProbes = probes{save: runSave, nft: probeNFT}

// Detect decides which backend holds the admin's input rules, for
// `Firewall = auto`, and returns a human-readable detail of what it found
// where. It only reads: it runs iptables-legacy-save and
// ip6tables-legacy-save if installed and lists nf_tables over netlink
// (which also shows iptables-nft's tables). See decide for the rules. It
// looks at the network namespace of the calling thread.
func Detect(ctx context.Context) (Kind, string, error) {
	return detectWith(ctx, defaultProbes)
}

func runSave(ctx context.Context, tool string) (string, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

var familyNames = map[nftables.TableFamily]string{
	nftables.TableFamilyIPv4:   "ip",
	nftables.TableFamilyIPv6:   "ip6",
	nftables.TableFamilyINet:   "inet",
	nftables.TableFamilyARP:    "arp",
	nftables.TableFamilyBridge: "bridge",
	nftables.TableFamilyNetdev: "netdev",
}

// probeNFT lists every table with its base chains, and counts the rules
// of base chains hooked at input in the ip, ip6 and inet families.
func probeNFT(ctx context.Context) ([]nftTableView, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var views []nftTableView
	for _, t := range tables {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v := nftTableView{Family: familyNames[t.Family], Name: t.Name}
		if v.Family == "" {
			v.Family = fmt.Sprintf("family%d", t.Family)
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != t.Name || ch.Table.Family != t.Family || ch.Hooknum == nil {
				continue
			}
			v.BaseChains = append(v.BaseChains, ch.Name)
			if *ch.Hooknum != unix.NF_INET_LOCAL_IN || (v.Family != "ip" && v.Family != "ip6" && v.Family != "inet") {
				continue
			}
			if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
				v.InputDrop = true
			}
			rules, err := c.GetRules(t, ch)
			if err != nil {
				// Rules this library cannot decode still are rules.
				v.InputRules++
				continue
			}
			for _, r := range rules {
				if !isSesameJump(r) {
					v.InputRules++
				}
			}
		}
		views = append(views, v)
	}
	return views, nil
}

// isSesameJump recognises iptables-nft's `-A INPUT -j SESAME` (or the
// rescue's SESAME-RESCUE): a counter and a jump, nothing else.
func isSesameJump(r *nftables.Rule) bool {
	jump := false
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Counter:
		case *expr.Verdict:
			jump = e.Kind == expr.VerdictJump && (e.Chain == ipChain || e.Chain == ipRescueChain)
		default:
			return false
		}
	}
	return jump
}
