package config

import (
	"fmt"
	"strings"
	"testing"
)

// Parsing is linear in the doors (a reload of 100k doors must take well
// under a second, issue 11).
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var sb strings.Builder
			for i := 0; i < n; i++ {
				p := 1024 + i%60000
				fmt.Fprintf(&sb, "[door%d]\nsequence = %d,%d:udp,9000\nseq_timeout = %d\ntcpflags = syn\nstart_command = true %%IP%%\n", i, p, p+1, 5+i%7)
			}
			data := []byte(sb.String())
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Parse("big.conf", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
