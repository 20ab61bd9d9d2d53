package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// BenchmarkGrantExtend measures one Grant that extends an existing grant
// (list, plan, replace), the common case when a knocker knocks again, and
// BenchmarkList one List with a single grant. Run with
// go test -run '^$' -bench . ./core/firewall/ (as root).
func BenchmarkGrantExtend(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			e := newBenchEnv(b, v)
			g := Grant{ID: "bench", Src: netnstest.ClientAddr4, Ports: guardedPorts, Deadline: time.Now().Add(time.Hour)}
			b.ResetTimer()
			err := e.pair.Server.Do(func() error {
				for i := 0; i < b.N; i++ {
					g.Deadline = g.Deadline.Add(time.Second)
					if err := e.b.Grant(context.Background(), g, time.Now()); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkList(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			e := newBenchEnv(b, v)
			g := Grant{ID: "bench", Src: netnstest.ClientAddr4, Ports: guardedPorts, Deadline: time.Now().Add(time.Hour)}
			err := e.pair.Server.Do(func() error {
				if err := e.b.Grant(context.Background(), g, time.Now()); err != nil {
					return err
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if gs, err := e.b.List(context.Background()); err != nil || len(gs) != 1 {
						b.Fatalf("List: %v %v", gs, err)
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

type benchEnv struct {
	pair *netnstest.Pair
	b    Backend
}

func newBenchEnv(b *testing.B, v variant) *benchEnv {
	netnstest.RequireRoot(b)
	pair := netnstest.NewPair(b)
	netnstest.RequireExecInNS(b, pair.Server)
	e := &benchEnv{pair: pair}
	if err := pair.Server.Do(func() (err error) {
		if e.b, err = New(v.kind, nil); err != nil {
			return err
		}
		return e.b.Setup(context.Background(), guardedPorts)
	}); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkGrantLatency times what a knock costs the firewall, per backend
// and family. Each round, one after the other: Grant of an address that
// holds nothing, an extension of that grant, Revoke; for the iptables
// flavours also the same accept put in by one exec of `iptables -I INPUT
// ...` and by `/bin/sh -c 'iptables -I INPUT ...'` (a knockd-style start
// command). Interleaving them puts every row through the same load; each
// is reported as its median in ms (the *-ms columns), with execs/op the
// programs the backend ran per Grant, extension or Revoke. The two execs
// run in the client namespace, so that their changes do not move the
// server's nf_tables generation under the backend. Run with
// go test -run '^$' -bench GrantLatency -benchtime 200x ./core/firewall/ (as root).
func BenchmarkGrantLatency(b *testing.B) {
	for _, v := range variants {
		e := newBenchEnv(b, v)
		var execs atomic.Int64
		if ipt, ok := e.b.(*ipTablesBackend); ok {
			next := ipt.run
			ipt.run = func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
				execs.Add(1)
				return next(ctx, argv, stdin)
			}
		}
		for i, f := range families {
			b.Run(v.name+"/"+f.name, func(b *testing.B) {
				ops := benchOps(e, v, i, f.client)
				took := make([][]time.Duration, len(ops))
				start := execs.Load()
				for b.Loop() {
					for j, op := range ops {
						d, err := op.run()
						if err != nil {
							b.Fatalf("%s: %v", op.name, err)
						}
						took[j] = append(took[j], d)
					}
				}
				for j, op := range ops {
					b.ReportMetric(medianMS(took[j]), op.name+"-ms")
				}
				if !v.isNFT() {
					b.ReportMetric(float64(execs.Load()-start)/float64(3*b.N), "execs/op")
				}
			})
		}
	}
}

type benchOp struct {
	name string
	run  func() (time.Duration, error)
}

// benchOps are one round of BenchmarkGrantLatency for the family of src.
func benchOps(e *benchEnv, v variant, fam int, src netip.Addr) []benchOp {
	ctx := context.Background()
	g := Grant{ID: "bench", Src: src, Ports: guardedPorts}
	// timed runs op in ns, timing it alone.
	timed := func(ns *netnstest.NS, op func() error, after func() error) (d time.Duration, err error) {
		err = ns.Do(func() error {
			t := time.Now()
			if err := op(); err != nil {
				return err
			}
			d = time.Since(t)
			return after()
		})
		return d, err
	}
	none := func() error { return nil }
	ops := []benchOp{
		{"grant", func() (time.Duration, error) {
			g.Deadline = time.Now().Add(time.Hour)
			return timed(e.pair.Server, func() error { return e.b.Grant(ctx, g, time.Now()) }, none)
		}},
		{"extend", func() (time.Duration, error) {
			g.Deadline = g.Deadline.Add(time.Second)
			return timed(e.pair.Server, func() error { return e.b.Grant(ctx, g, time.Now()) }, none)
		}},
		{"revoke", func() (time.Duration, error) {
			return timed(e.pair.Server, func() error { return e.b.Revoke(ctx, g) }, none)
		}},
	}
	if v.isNFT() {
		return ops
	}
	rule := []string{"INPUT", "-s", src.String(), "-p", "tcp", "--dport", fmt.Sprint(guardedPort), "-j", "ACCEPT"}
	bin := v.bins[fam]
	ins := append([]string{bin, "-w", "10", "-I"}, rule...)
	del := func() error { return exec.Command(bin, append([]string{"-w", "10", "-D"}, rule...)...).Run() }
	return append(ops,
		benchOp{"exec-iptables-I", func() (time.Duration, error) {
			return timed(e.pair.Client, func() error { return exec.Command(ins[0], ins[1:]...).Run() }, del)
		}},
		benchOp{"sh-iptables-I", func() (time.Duration, error) {
			return timed(e.pair.Client, func() error { return exec.Command("/bin/sh", "-c", strings.Join(ins, " ")).Run() }, del)
		}},
	)
}

func medianMS(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// BenchmarkNFTGen is what the iptables-nft backend adds to every change:
// one read of the nf_tables generation.
func BenchmarkNFTGen(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.NewNS(b, "gen")
	if err := ns.Do(func() error {
		for b.Loop() {
			if _, err := nftGen(); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}
