package firewall

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/sesame-knock/sesame/core/knock"
)

// The iptables backend's one-invocation changes and its view, against the
// kernel: every program the backend runs goes through a recorder wrapped
// around its exec path.

// xtCall is one program run by the backend.
type xtCall struct {
	argv  []string
	stdin string
}

func (c xtCall) String() string {
	s := strings.Join(c.argv, " ")
	if c.stdin != "" {
		s += " <<< " + strings.ReplaceAll(strings.TrimSpace(c.stdin), "\n", " | ")
	}
	return s
}

// restore reports whether the call is an iptables-restore.
func (c xtCall) restore() bool { return strings.HasSuffix(c.argv[0], "-restore") }

// netlink reports whether the call is a netlink append; its stdin holds
// an `-A SESAME spec` line per rule.
func (c xtCall) netlink() bool { return c.argv[0] == "netlink" }

// xtRecorder wraps a backend's exec path and records every call.
type xtRecorder struct {
	mu    sync.Mutex
	calls []xtCall
}

func (r *xtRecorder) wrap(next xtRunFunc) xtRunFunc {
	return func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
		r.mu.Lock()
		r.calls = append(r.calls, xtCall{argv: slices.Clone(argv), stdin: string(stdin)})
		r.mu.Unlock()
		return next(ctx, argv, stdin)
	}
}

// wrapNL records each netlink append as one call.
func (r *xtRecorder) wrapNL(next xtAppendFunc) xtAppendFunc {
	return func(family nftables.TableFamily, rules []xtRule) error {
		var lines strings.Builder
		for _, x := range rules {
			lines.WriteString("-A " + ipChain + " " + strings.Join(x.spec, " ") + "\n")
		}
		r.mu.Lock()
		r.calls = append(r.calls, xtCall{argv: []string{"netlink", fmt.Sprint(family)}, stdin: lines.String()})
		r.mu.Unlock()
		return next(family, rules)
	}
}

// take returns the calls since the last take.
func (r *xtRecorder) take() []xtCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

var ipVariants = variants[:2] // iptables-nft, iptables-legacy

// record returns the iptables backend of e with a recorder on its exec path.
func (e *testEnv) record() (*ipTablesBackend, *xtRecorder) {
	e.t.Helper()
	b, ok := e.b.(*ipTablesBackend)
	if !ok {
		e.t.Fatalf("backend %T is not the iptables backend", e.b)
	}
	rec := &xtRecorder{}
	b.mu.Lock()
	b.run = rec.wrap(b.run)
	if b.appendNL != nil {
		b.appendNL = rec.wrapNL(b.appendNL)
	}
	b.mu.Unlock()
	return b, rec
}

// wantCalls fails unless the calls since the last take number n and,
// when check is set, it finds nothing wrong with them.
func wantCalls(t *testing.T, rec *xtRecorder, what string, n int, check func(c []xtCall) string) {
	t.Helper()
	calls := rec.take()
	for _, c := range calls {
		t.Logf("%s: %s", what, c)
	}
	if len(calls) != n {
		t.Fatalf("%s ran %d programs, want %d", what, len(calls), n)
	}
	if check != nil {
		if msg := check(calls); msg != "" {
			t.Fatalf("%s: %s", what, msg)
		}
	}
}

// plainAppend checks for one `iptables ... -A SESAME`.
func plainAppend(c []xtCall) string {
	if c[0].restore() || !slices.Contains(c[0].argv, "-A") || !slices.Contains(c[0].argv, ipChain) {
		return "want one iptables -A SESAME, got " + c[0].String()
	}
	return ""
}

// newRules checks for what appends n new rules: one netlink transaction
// with iptables-nft, else one `iptables -A` (n = 1) or one restore.
func newRules(v variant, n int) func(c []xtCall) string {
	if v.kind != IPTablesNFT {
		if n == 1 {
			return plainAppend
		}
		return restoreOf(n, 0)
	}
	return func(c []xtCall) string {
		if !c[0].netlink() || strings.Count(c[0].stdin, "-A "+ipChain+" ") != n {
			return fmt.Sprintf("want one netlink append of %d rules, got %s", n, c[0])
		}
		return ""
	}
}

// restoreOf checks for one iptables-restore --noflush that appends adds
// rules and deletes dels.
func restoreOf(adds, dels int) func(c []xtCall) string {
	return func(c []xtCall) string {
		if !c[0].restore() || !slices.Contains(c[0].argv, "--noflush") {
			return "want one iptables-restore --noflush, got " + c[0].String()
		}
		a := strings.Count(c[0].stdin, "\n-A "+ipChain+" ")
		d := strings.Count(c[0].stdin, "\n-D "+ipChain+" ")
		if a != adds || d != dels {
			return fmt.Sprintf("script appends %d and deletes %d, want %d and %d:\n%s", a, d, adds, dels, c[0].stdin)
		}
		return ""
	}
}

// kernelEntries is what `iptables -S SESAME` shows of one family's grants.
func (e *testEnv) kernelEntries(bin string) []entry {
	e.t.Helper()
	out, err := e.pair.Server.Run(bin, "-S", ipChain)
	if err != nil {
		return nil
	}
	return parseTable("-N "+ipChain+"\n"+out, nil).entries
}

// wantViewIsKernel fails unless each family's view is fresh and holds
// exactly the rules the kernel has.
func (e *testEnv) wantViewIsKernel(b *ipTablesBackend, why string) {
	e.t.Helper()
	e.wantFamilyView(b, why, 0, 1)
}

// wantFamilyView is wantViewIsKernel for the families listed (0 IPv4, 1 IPv6).
func (e *testEnv) wantFamilyView(b *ipTablesBackend, why string, fams ...int) {
	e.t.Helper()
	for _, i := range fams {
		bin := e.v.bins[i]
		b.mu.Lock()
		view, fresh := entryText(b.fams[i].view), b.fams[i].fresh
		b.mu.Unlock()
		kernel := entryText(e.kernelEntries(bin))
		if !fresh || !slices.Equal(view, kernel) {
			e.t.Fatalf("%s: %s view (fresh %v):\n%s\nkernel:\n%s", why, bin, fresh,
				strings.Join(view, "\n"), strings.Join(kernel, "\n"))
		}
	}
}

// A Grant, an extension, a shared grant, a two-protocol grant and a
// Revoke each run iptables once (a grant for a new source is one netlink
// transaction with iptables-nft); revoking what is gone runs nothing.
// Afterwards the view is what the kernel holds.
func TestIPTablesOneInvocation(t *testing.T) {
	for _, v := range ipVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, v)
			b, rec := e.record()
			for i, f := range families {
				g := Grant{ID: "one-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
				e.grant(g)
				wantCalls(t, rec, f.name+" grant", 1, newRules(v, 1))
				e.wantOpen(f.client, f.name+" after the grant")

				g.Deadline = g.Deadline.Add(time.Minute)
				e.grant(g)
				wantCalls(t, rec, f.name+" extension", 1, restoreOf(1, 1))
				e.wantOpen(f.client, f.name+" after the extension")
				if n := len(e.kernelEntries(v.bins[i])); n != 1 {
					t.Fatalf("%s: %d rules after the extension", f.name, n)
				}

				h := Grant{ID: "shared-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
				e.grant(h)
				wantCalls(t, rec, f.name+" second grant on the same rule", 1, restoreOf(1, 1))

				two := Grant{ID: "two-" + f.name, Src: f.other, Deadline: time.Now().Add(time.Minute),
					Ports: []knock.Port{{Num: guardedPort, Proto: knock.TCP}, {Num: guardedPort + 1, Proto: knock.UDP}}}
				e.grant(two)
				wantCalls(t, rec, f.name+" tcp and udp grant", 1, newRules(v, 2))
				e.wantOpen(f.other, f.name+" after the tcp and udp grant")
				if n := len(e.kernelEntries(v.bins[i])); n != 3 {
					t.Fatalf("%s: %d rules, want 3", f.name, n)
				}
				e.wantViewIsKernel(b, f.name+" after the grants")

				e.revoke(h)
				wantCalls(t, rec, f.name+" revoke of a shared rule", 1, restoreOf(1, 1))
				e.revoke(g)
				wantCalls(t, rec, f.name+" revoke", 1, func(c []xtCall) string {
					if c[0].restore() || !slices.Contains(c[0].argv, "-D") {
						return "want one iptables -D, got " + c[0].String()
					}
					return ""
				})
				e.wantBlocked(f.client, f.name+" after both revokes")
				e.revoke(g)
				wantCalls(t, rec, f.name+" revoke of a revoked grant", 0, nil)
				e.revoke(two)
				wantCalls(t, rec, f.name+" revoke of the tcp and udp grant", 1, restoreOf(0, 2))
				e.wantBlocked(f.other, f.name+" after its revoke")
				e.wantViewIsKernel(b, f.name+" after the revokes")
				if n := len(e.kernelEntries(v.bins[i])); n != 0 {
					t.Fatalf("%s: %d rules left", f.name, n)
				}
			}
		})
	}
}

// Someone flushes Sesame's chain: Reconcile puts the rules back and the
// view with them, and the next extension is one invocation again with no
// duplicate rule.
func TestIPTablesReconcileRestoresFlushedChain(t *testing.T) {
	for _, v := range ipVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, v)
			b, rec := e.record()
			var live []Grant
			for _, f := range families {
				g := Grant{ID: "fl-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
				e.grant(g)
				live = append(live, g)
			}
			rec.take()
			eachBin("-F", ipChain)(t, e)
			for _, f := range families {
				e.wantBlocked(f.client, f.name+" after the flush")
			}

			rep := e.reconcile(live...)
			if got := ids(rep.Restored); !slices.Equal(got, []string{"fl-ipv4", "fl-ipv6"}) || rep.Recreated || len(rep.Removed) != 0 {
				t.Fatalf("report: recreated %v restored %v removed %v", rep.Recreated, got, ids(rep.Removed))
			}
			// One listing per family, one append per restored grant.
			wantCalls(t, rec, "reconcile", 4, nil)
			e.wantViewIsKernel(b, "after reconcile")
			for i, f := range families {
				e.wantOpen(f.client, f.name+" after reconcile")
				live[i].Deadline = live[i].Deadline.Add(time.Minute)
				e.grant(live[i])
				wantCalls(t, rec, f.name+" extension after reconcile", 1, restoreOf(1, 1))
				if n := len(e.kernelEntries(v.bins[i])); n != 1 {
					t.Fatalf("%s: %d rules after the extension", f.name, n)
				}
			}
			e.wantViewIsKernel(b, "after the extensions")
			if again := e.reconcile(live...); again.Changed() {
				t.Fatalf("second reconcile changed things: %+v", again)
			}
		})
	}
}

// Someone deletes one of Sesame's rules by hand. An extension of that
// grant notices (iptables-nft before running anything, by the nf_tables
// generation; iptables-legacy when its restore fails), re-reads the chain
// and appends the rule; Reconcile restores a grant whose rule was deleted
// and nothing touched it since.
func TestIPTablesRuleDeletedByHand(t *testing.T) {
	for _, v := range ipVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, v)
			b, rec := e.record()
			var live []Grant
			for _, f := range families {
				g := Grant{ID: "hand-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
				e.grant(g)
				live = append(live, g)
			}
			rec.take()
			deleteByHand := func(i int) {
				t.Helper()
				out := e.pair.Server.MustRun(v.bins[i], "-S", ipChain)
				for _, l := range strings.Split(out, "\n") {
					if strings.HasPrefix(l, "-A "+ipChain+" ") {
						args, err := splitRuleArgs(l)
						if err != nil {
							t.Fatal(err)
						}
						args[0] = "-D"
						e.pair.Server.MustRun(append([]string{v.bins[i]}, args...)...)
						return
					}
				}
				t.Fatalf("no rule to delete in\n%s", out)
			}

			deleteByHand(0)
			e.wantBlocked(families[0].client, "after deleting the rule by hand")
			live[0].Deadline = live[0].Deadline.Add(time.Minute)
			e.grant(live[0])
			// iptables-nft: listing, append. iptables-legacy: the restore
			// that fails, listing, append.
			want := 2
			if v.kind == IPTablesLegacy {
				want = 3
			}
			wantCalls(t, rec, "extension of the deleted rule", want, func(c []xtCall) string {
				return plainAppend(c[len(c)-1:])
			})
			e.wantOpen(families[0].client, "after extending the grant whose rule was deleted")
			if n := len(e.kernelEntries(v.bins[0])); n != 1 {
				t.Fatalf("%d rules after the extension", n)
			}
			// The IPv6 view is re-read when next used: on iptables-nft the
			// generation says something changed, not in which family.
			e.wantFamilyView(b, "after the extension", 0)

			deleteByHand(1)
			rep := e.reconcile(live...)
			if got := ids(rep.Restored); !slices.Equal(got, []string{"hand-ipv6"}) || rep.Recreated || len(rep.Removed) != 0 {
				t.Fatalf("report: recreated %v restored %v removed %v", rep.Recreated, got, ids(rep.Removed))
			}
			wantCalls(t, rec, "reconcile", 3, nil)
			e.wantOpen(families[1].client, "after reconcile")
			e.wantViewIsKernel(b, "after reconcile")
		})
	}
}

// A firewall reload that keeps the chain but loses the jump (`iptables
// -F`): iptables-nft sees the nf_tables generation move, so the next Grant
// re-reads and re-inserts the jump in the same restore as its rule, and
// the door opens at once. iptables-legacy has no such signal; the rule
// lands in the chain and Reconcile puts the jump back.
func TestIPTablesFlushedJump(t *testing.T) {
	for _, v := range ipVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, v)
			b, rec := e.record()
			eachBin("-F")(t, e)
			lockDown(t, e.pair.Server, v)
			var live []Grant
			for _, f := range families {
				g := Grant{ID: "jump-" + f.name, Src: f.client, Ports: guardedPorts, Deadline: time.Now().Add(time.Minute)}
				e.grant(g)
				live = append(live, g)
				if v.kind == IPTablesNFT {
					wantCalls(t, rec, f.name+" grant after the flush", 2, func(c []xtCall) string {
						if !c[1].restore() || !strings.Contains(c[1].stdin, "-I "+ipInput+" 1 -j "+ipChain) {
							return "want the listing, then a restore that inserts the jump"
						}
						return ""
					})
					e.wantOpen(f.client, f.name+" right after the grant")
				} else {
					wantCalls(t, rec, f.name+" grant after the flush", 1, plainAppend)
				}
			}
			rep := e.reconcile(live...)
			if rep.Recreated != (v.kind != IPTablesNFT) || len(rep.Restored) != 0 {
				t.Fatalf("report: recreated %v restored %v", rep.Recreated, ids(rep.Restored))
			}
			rec.take()
			for _, f := range families {
				e.wantOpen(f.client, f.name+" after reconcile")
				e.wantBlocked(f.other, f.name+" other address after reconcile")
			}
			if j := e.jumps(); j != [2]int{1, 1} {
				t.Fatalf("jumps to SESAME: %v", j)
			}
			e.wantViewIsKernel(b, "after reconcile")
		})
	}
}
