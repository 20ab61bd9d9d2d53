package firewall

import (
	"context"
	"fmt"
	"os/exec"
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
// and family: Grant of an address that holds nothing, an extension of a
// live grant, Revoke; beside, for the iptables flavours, the same accept
// put in by one exec of `iptables -I INPUT ...` and by `/bin/sh -c
// 'iptables -I INPUT ...'` (a knockd-style start command), in the same run
// and namespace. execs/op counts the programs the backend ran. Run with
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
			name := v.name + "/" + f.name
			g := Grant{ID: "bench", Src: f.client, Ports: guardedPorts}
			grant := func(dl time.Time) error {
				g.Deadline = dl
				return e.b.Grant(context.Background(), g, time.Now())
			}
			revoke := func() error { return e.b.Revoke(context.Background(), g) }
			// timed runs op b.N times in the server namespace, with
			// untimed before and after, and reports the programs the
			// backend ran during op. The exec rows are not the backend's:
			// its next command sees the nf_tables generation moved and
			// re-reads its chain once.
			timed := func(b *testing.B, backend bool, before, op, after func() error) {
				err := e.pair.Server.Do(func() error {
					var n int64
					for b.Loop() {
						b.StopTimer()
						if err := before(); err != nil {
							return err
						}
						start := execs.Load()
						b.StartTimer()
						if err := op(); err != nil {
							return err
						}
						b.StopTimer()
						n += execs.Load() - start
						if err := after(); err != nil {
							return err
						}
						b.StartTimer()
					}
					if backend && !v.isNFT() {
						b.ReportMetric(float64(n)/float64(b.N), "execs/op")
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			none := func() error { return nil }
			b.Run(name+"/grant", func(b *testing.B) {
				timed(b, true, none, func() error { return grant(time.Now().Add(time.Hour)) }, revoke)
			})
			dl := time.Now().Add(time.Hour)
			b.Run(name+"/extend", func(b *testing.B) {
				timed(b, true, none, func() error { dl = dl.Add(time.Second); return grant(dl) }, none)
			})
			b.Run(name+"/revoke", func(b *testing.B) {
				timed(b, true, func() error { return grant(time.Now().Add(time.Hour)) }, revoke, none)
			})
			if v.isNFT() {
				continue
			}
			rule := []string{"INPUT", "-s", f.client.String(), "-p", "tcp", "--dport", fmt.Sprint(guardedPort), "-j", "ACCEPT"}
			bin := v.bins[i]
			ins := append([]string{bin, "-w", "10", "-I"}, rule...)
			del := func() error { return exec.Command(bin, append([]string{"-w", "10", "-D"}, rule...)...).Run() }
			b.Run(name+"/exec-iptables-I", func(b *testing.B) {
				timed(b, false, none, func() error { return exec.Command(ins[0], ins[1:]...).Run() }, del)
			})
			b.Run(name+"/sh-iptables-I", func(b *testing.B) {
				timed(b, false, none, func() error { return exec.Command("/bin/sh", "-c", strings.Join(ins, " ")).Run() }, del)
			})
		}
	}
}
