package journal

import (
	"fmt"
	"testing"
)

// BenchmarkGrantRevoked measures one grant's journaling cost: a Grant and
// its Revoked, each fsynced (fdatasync), with compaction running as the
// log grows. Run it on the filesystem the state directory lives on
// (TMPDIR=/var/lib/... go test -bench GrantRevoked).
func BenchmarkGrantRevoked(b *testing.B) {
	for _, live := range []int{0, 100} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			j, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			for i := 0; i < live; i++ {
				if err := j.Grant(rec(100000 + i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := rec(i % 50000)
				if err := j.Grant(r); err != nil {
					b.Fatal(err)
				}
				if err := j.Revoked(r.ID, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
