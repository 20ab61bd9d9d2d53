package command

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRunStartToFirstInstruction times from Run's call to the
// command's first instruction (its open of a FIFO the benchmark reads):
// through a warm shell, through a cold one (NoWarm), and, as the
// machine's own cost, a bare exec.Command of /bin/sh -c from Go. The
// warm case waits for an idle warm shell outside the timed part, as a
// knock after a quiet moment finds one. It reports the median and the
// largest time per command.
func BenchmarkRunStartToFirstInstruction(b *testing.B) {
	fifo := filepath.Join(b.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := ": > " + fifo
	run := func(b *testing.B, start func(), wait func()) {
		times := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			start()
			f, err := os.Open(fifo) // returns once the command opened it
			el := time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
			b.StopTimer()
			wait()
			times = append(times, el)
			b.StartTimer()
		}
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
	}
	for _, tt := range []struct {
		name string
		opts Options
	}{{"warm", Options{}}, {"cold", Options{NoWarm: true}}} {
		b.Run(tt.name, func(b *testing.B) {
			r := New(tt.opts)
			defer r.Close()
			done := make(chan Result, 1)
			if !tt.opts.NoWarm {
				r.refill()
				idleWarm(b, r)
			}
			run(b, func() {
				go func() { done <- r.Run(context.Background(), "d", cmd) }()
			}, func() {
				if res := <-done; res.ExitCode != 0 {
					b.Fatalf("%+v", res)
				}
				if !tt.opts.NoWarm {
					idleWarm(b, r)
				}
			})
		})
	}
	b.Run("sh-c", func(b *testing.B) {
		var c *exec.Cmd
		run(b, func() {
			c = exec.Command("/bin/sh", "-c", cmd)
			if err := c.Start(); err != nil {
				b.Fatal(err)
			}
		}, func() {
			if err := c.Wait(); err != nil {
				b.Fatal(err)
			}
		})
	})
}
