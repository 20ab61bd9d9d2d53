package loglimit

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestLimiterHoldsBackAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		got := map[string]uint64{}
		reports := 0
		l := New(Options{Rate: 1, Burst: 3, Every: 10 * time.Second, Report: func(k string, n uint64, every time.Duration) {
			mu.Lock()
			got[k] += n
			reports++
			mu.Unlock()
		}})
		now := time.Now()
		allowed := 0
		for i := 0; i < 1000; i++ {
			if l.Allow("ssh", now) {
				allowed++
			}
			l.Count("ssh refused", now)
		}
		if allowed != 3 {
			t.Errorf("allowed %d of a burst, want 3", allowed)
		}
		if !l.Allow("web", now) {
			t.Error("one key limits another")
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		mu.Lock()
		if got["ssh"] != 997 || got["ssh refused"] != 1000 || reports != 2 {
			t.Errorf("reports %d: %v", reports, got)
		}
		mu.Unlock()
		// Nothing held back, nothing reported.
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		if reports != 2 {
			t.Errorf("reported with nothing held back: %d", reports)
		}
		mu.Unlock()
		l.Close()
	})
}

func TestLimiterKeysAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var total uint64
		var mu sync.Mutex
		l := New(Options{Rate: 1, Burst: 1, MaxKeys: 16, Report: func(k string, n uint64, _ time.Duration) {
			mu.Lock()
			total += n
			mu.Unlock()
		}})
		now := time.Now()
		for i := 0; i < 100000; i++ {
			l.Count(fmt.Sprint("door", i), now)
		}
		if n := l.Keys(); n > 16 {
			t.Errorf("%d keys tracked, bound 16", n)
		}
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		if total != 100000 {
			t.Errorf("reported %d of 100000 held-back lines", total)
		}
	})
}

// AllowN counts what a held-back line stands for: the report says how
// many things, not how many lines.
func TestLimiterAllowNCountsWhatLinesStandFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got uint64
		l := New(Options{Rate: 0.1, Burst: 1, Every: 10 * time.Second, Report: func(k string, n uint64, _ time.Duration) {
			mu.Lock()
			got += n
			mu.Unlock()
		}})
		now := time.Now()
		if !l.AllowN("evicted", 57, now) {
			t.Fatal("the first line was held back")
		}
		for i := 0; i < 3; i++ {
			if l.AllowN("evicted", 100, now.Add(time.Duration(i)*time.Second)) {
				t.Fatalf("line %d allowed within the interval", i+2)
			}
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if got != 300 {
			t.Errorf("reported %d held back, want 300", got)
		}
		l.Close()
	})
}
