package firewall

import (
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/sesame-knock/sesame/core/knock"
)

func tags(rs []nftRule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.tag)
	}
	return out
}

func TestRescueRules(t *testing.T) {
	all := rescueRules(mustRescueSpec(t, "22/tcp"))
	if got := tags(all[nftRescueGate]); !slices.Equal(got, []string{
		"sesame rescue: heartbeat present, rescue closed",
		"sesame rescue: no heartbeat, open to everyone",
		"sesame rescue: closed to this source",
	}) {
		t.Errorf("gate for anyone: %q", got)
	}
	from := rescueRules(mustRescueSpec(t, "22/tcp", "10.0.0.0/8", "2001:db8::/32"))
	if got := tags(from[nftRescueGate]); !slices.Equal(got, []string{
		"sesame rescue: heartbeat present, rescue closed",
		"sesame rescue: no heartbeat, open to 10.0.0.0/8",
		"sesame rescue: no heartbeat, open to 2001:db8::/32",
		"sesame rescue: closed to this source",
	}) {
		t.Errorf("gate with Rescue_From: %q", got)
	}
	// Every chain a rule jumps or goes to is one of the rescue's, and
	// every set it names exists: Install creates exactly these.
	chains := map[string]bool{}
	for _, c := range rescueChains() {
		chains[c.Name] = true
	}
	sets := map[string]bool{}
	for _, s := range append(nftSets(), rescueSets()...) {
		sets[s.Name] = true
	}
	for chain, rules := range from {
		if !chains[chain] {
			t.Errorf("rules for unknown chain %s", chain)
		}
		seen := map[string]bool{}
		for _, r := range rules {
			if seen[r.tag] {
				t.Errorf("%s: duplicate tag %q", chain, r.tag)
			}
			seen[r.tag] = true
			for _, e := range r.exprs {
				switch e := e.(type) {
				case *expr.Verdict:
					if e.Chain != "" && !chains[e.Chain] {
						t.Errorf("%s: %q goes to unknown chain %s", chain, r.tag, e.Chain)
					}
				case *expr.Lookup:
					if !sets[e.SetName] {
						t.Errorf("%s: %q looks up unknown set %s", chain, r.tag, e.SetName)
					}
				case *expr.Dynset:
					if e.SetName != nftAllow4 && e.SetName != nftAllow6 {
						t.Errorf("%s: %q adds to %s", chain, r.tag, e.SetName)
					}
					if e.Operation != 0 { // NFT_DYNSET_OP_ADD: never shorten a real grant
						t.Errorf("%s: %q dynset operation %d, want add", chain, r.tag, e.Operation)
					}
				}
			}
		}
	}
}

// TestMatchSourceMask checks the prefix mask byte by byte.
func TestMatchSourceMask(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		mask   []byte
	}{
		{"10.0.0.0/8", []byte{0xff, 0, 0, 0}},
		{"192.0.2.128/25", []byte{0xff, 0xff, 0xff, 0x80}},
		{"0.0.0.0/0", []byte{0, 0, 0, 0}},
		{"2001:db8::/33", []byte{0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		s := mustRescueSpec(t, "22/tcp", tc.prefix)
		p := append(s.from4, s.from6...)[0]
		var bw *expr.Bitwise
		for _, e := range matchSource(p) {
			if b, ok := e.(*expr.Bitwise); ok {
				bw = b
			}
		}
		if bw == nil || !slices.Equal(bw.Mask, tc.mask) {
			t.Errorf("%s: mask %x, want %x", tc.prefix, bw.Mask, tc.mask)
		}
	}
}

func TestAliveState(t *testing.T) {
	ports := mustRescueSpec(t, "22/tcp,53/udp").ports
	el := func(p knock.Port, left time.Duration) nftables.SetElement {
		return nftables.SetElement{Key: portKey(p), Expires: left}
	}
	held, left := aliveState([]nftables.SetElement{el(ports[0], 20*time.Second), el(ports[1], 12*time.Second)}, ports)
	if held || left != 12*time.Second {
		t.Errorf("held %t left %s, want false 12s", held, left)
	}
	held, left = aliveState([]nftables.SetElement{el(ports[0], 20*time.Second), {Key: holdKey}}, ports)
	if !held || left != 0 {
		t.Errorf("held %t left %s, want true 0 (53/udp has no heartbeat)", held, left)
	}
	if p, err := parsePortKey(portKey(ports[1])); err != nil || p != ports[1] {
		t.Errorf("key round trip: %v %v", p, err)
	}
}
