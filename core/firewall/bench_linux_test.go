package firewall

import (
	"context"
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
