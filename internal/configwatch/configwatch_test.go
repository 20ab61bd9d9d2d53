package configwatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// cw runs a Watcher over a temp dir and records what it delivers.
type cw struct {
	t     *testing.T
	w     *Watcher
	got   chan string  // accepted deliveries, in order
	reads chan bool    // one per read: whether it delivered a change
	calls atomic.Int32 // OnChange invocations, accepted or not
}

// startCW watches path, whose current content is taken as running.
func startCW(t *testing.T, path string, debounce time.Duration) *cw {
	t.Helper()
	c := &cw{t: t, got: make(chan string, 100), reads: make(chan bool, 100)}
	var current [sha256.Size]byte
	if _, sum, err := Read(path); err == nil {
		current = sum
	}
	var sink syncbuf.Buffer
	w, err := New(path, current, func(content []byte, sum [sha256.Size]byte) error {
		c.calls.Add(1)
		if sum != sha256.Sum256(content) {
			t.Errorf("OnChange sum does not match content %q", content)
		}
		if strings.HasPrefix(string(content), "bad") {
			return errors.New("parse error at line 1")
		}
		c.got <- string(content)
		return nil
	}, Options{Debounce: debounce, Logger: hclog.New(&hclog.LoggerOptions{Output: &sink, Level: hclog.Trace})})
	if err != nil {
		t.Fatal(err)
	}
	w.afterRead = func(changed bool) { c.reads <- changed }
	c.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", sink.String())
		}
	})
	return c
}

func (c *cw) wantDelivery(want string) {
	c.t.Helper()
	select {
	case got := <-c.got:
		if got != want {
			c.t.Fatalf("delivered %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no delivery of %q within 5s", want)
	}
}

// wantRead waits for the next read and checks whether it delivered.
func (c *cw) wantRead(changed bool) {
	c.t.Helper()
	select {
	case got := <-c.reads:
		if got != changed {
			c.t.Fatalf("read delivered=%v, want %v", got, changed)
		}
	case <-time.After(5 * time.Second):
		c.t.Fatal("no read within 5s")
	}
}

func (c *cw) wantNoDelivery() {
	c.t.Helper()
	select {
	case got := <-c.got:
		c.t.Fatalf("unexpected delivery %q", got)
	default:
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigWatcherSeesReplacements(t *testing.T) {
	const old, updated = "[openSSH]\nsequence = 7000,8000,9000\n", "[openSSH]\nsequence = 1,2,3\n"
	for _, tc := range []struct {
		name string
		// setup creates the config holding old and returns the path to watch.
		setup  func(t *testing.T, dir string) string
		change func(t *testing.T, dir, path string)
	}{
		{
			name: "in-place write",
			change: func(t *testing.T, dir, path string) {
				write(t, path, updated)
			},
		},
		{
			name: "sed -i: temp file renamed over",
			change: func(t *testing.T, dir, path string) {
				tmp := filepath.Join(dir, "sedAb12Cd")
				write(t, tmp, updated)
				must(t, os.Rename(tmp, path))
			},
		},
		{
			name: "editor: original renamed away, new file written",
			change: func(t *testing.T, dir, path string) {
				must(t, os.Rename(path, path+"~"))
				write(t, path, updated)
			},
		},
		{
			name: "kubernetes ..data symlink swap",
			setup: func(t *testing.T, dir string) string {
				must(t, os.Mkdir(filepath.Join(dir, "..2024_01"), 0o755))
				write(t, filepath.Join(dir, "..2024_01", "knockd.conf"), old)
				must(t, os.Symlink("..2024_01", filepath.Join(dir, "..data")))
				path := filepath.Join(dir, "knockd.conf")
				must(t, os.Symlink("..data/knockd.conf", path))
				return path
			},
			change: func(t *testing.T, dir, path string) {
				must(t, os.Mkdir(filepath.Join(dir, "..2024_02"), 0o755))
				write(t, filepath.Join(dir, "..2024_02", "knockd.conf"), updated)
				must(t, os.Symlink("..2024_02", filepath.Join(dir, "..data_tmp")))
				must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
				must(t, os.RemoveAll(filepath.Join(dir, "..2024_01")))
			},
		},
		{
			name: "symlink into another directory, target rewritten there",
			setup: func(t *testing.T, dir string) string {
				must(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
				must(t, os.Mkdir(filepath.Join(dir, "etc"), 0o755))
				write(t, filepath.Join(dir, "real", "knockd.conf.v1"), old)
				path := filepath.Join(dir, "etc", "knockd.conf")
				must(t, os.Symlink(filepath.Join(dir, "real", "knockd.conf.v1"), path))
				return path
			},
			change: func(t *testing.T, dir, path string) {
				tmp := filepath.Join(dir, "real", ".tmp")
				write(t, tmp, updated)
				must(t, os.Rename(tmp, filepath.Join(dir, "real", "knockd.conf.v1")))
			},
		},
		{
			name: "symlink repointed",
			setup: func(t *testing.T, dir string) string {
				write(t, filepath.Join(dir, "v1.conf"), old)
				write(t, filepath.Join(dir, "v2.conf"), updated)
				path := filepath.Join(dir, "knockd.conf")
				must(t, os.Symlink("v1.conf", path))
				return path
			},
			change: func(t *testing.T, dir, path string) {
				must(t, os.Symlink("v2.conf", path+".new"))
				must(t, os.Rename(path+".new", path))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "knockd.conf")
			if tc.setup != nil {
				path = tc.setup(t, dir)
			} else {
				write(t, path, old)
			}
			c := startCW(t, path, 20*time.Millisecond)
			tc.change(t, dir, path)
			c.wantDelivery(updated)
		})
	}
}

func TestConfigWatcherDeleteAndRecreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	write(t, path, "v1")
	c := startCW(t, path, 20*time.Millisecond)
	must(t, os.Remove(path))
	c.wantRead(false) // the missing file is logged, the running config kept
	c.wantNoDelivery()
	write(t, path, "v2")
	c.wantDelivery("v2")
}

// The config's whole directory deleted (or moved away) and made again:
// automatic reloads carry on. The directory's watch used to die with it,
// for good.
func TestConfigWatcherDirectoryDeletedAndRecreated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(t *testing.T, dir string)
		// settle: wait for the watcher to notice the directory is gone
		// before it comes back (else it comes back within one debounce).
		settle bool
	}{
		{"rm -rf, then recreated", func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, true},
		{"moved away, then recreated", func(t *testing.T, dir string) { must(t, os.Rename(dir, dir+".old")) }, true},
		{"rm -rf and recreated at once", func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc", "sesame")
			must(t, os.MkdirAll(dir, 0o755))
			path := filepath.Join(dir, "sesame.conf")
			write(t, path, "v1")
			c := startCW(t, path, 20*time.Millisecond)
			tc.remove(t, dir)
			if tc.settle {
				c.wantRead(false) // the missing file is logged, the running config kept
			}
			must(t, os.MkdirAll(dir, 0o755))
			write(t, path, "v2")
			c.wantDelivery("v2")
			// And the directory is watched again, not only read once.
			write(t, path, "v3")
			c.wantDelivery("v3")
		})
	}
}

func TestConfigWatcherUnchangedTouchDeliversNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	write(t, path, "v1")
	c := startCW(t, path, 20*time.Millisecond)
	later := time.Now().Add(time.Hour)
	must(t, os.Chtimes(path, later, later))
	c.wantRead(false)
	write(t, path, "v1") // rewritten with the same bytes
	c.wantRead(false)
	if n := c.calls.Load(); n != 0 {
		t.Fatalf("OnChange called %d times for unchanged content", n)
	}
	write(t, path, "v2")
	c.wantDelivery("v2")
}

func TestConfigWatcherRelevantEvents(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
	write(t, filepath.Join(dir, "real", "knockd.conf.v1"), "v1")
	path := filepath.Join(dir, "knockd.conf")
	must(t, os.Symlink(filepath.Join(dir, "real", "knockd.conf.v1"), path))
	w, err := New(path, [sha256.Size]byte{}, func([]byte, [sha256.Size]byte) error { return nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, tc := range []struct {
		name string
		want bool
	}{
		{path, true},
		{filepath.Join(dir, "real", "knockd.conf.v1"), true},
		{filepath.Join(dir, "..data"), true},
		{filepath.Join(dir, "..data_tmp"), true},
		{filepath.Join(dir, "other.conf"), false},
		{filepath.Join(dir, "knockd.conf.swp"), false},
		{filepath.Join(dir, "real", "other"), false},
		{filepath.Join(dir, "real", "knockd.conf"), true}, // same base name
	} {
		if got := w.relevant(fsnotify.Event{Name: tc.name, Op: fsnotify.Write}); got != tc.want {
			t.Errorf("relevant(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConfigWatcherDebouncesBursts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	write(t, path, "v0")
	// A debounce five times the burst's length: only a scheduler stall of
	// a whole second between two writes could split it.
	c := startCW(t, path, time.Second)
	// Writes 20ms apart: a debounce much shorter than the burst would read
	// (and deliver) intermediate versions.
	for i := 1; i <= 10; i++ {
		write(t, path, "v"+string(rune('0'+i%10))+strings.Repeat("x", i))
		time.Sleep(20 * time.Millisecond)
	}
	final := "v0" + strings.Repeat("x", 10)
	c.wantRead(true)
	c.wantDelivery(final)
	if n := c.calls.Load(); n != 1 {
		t.Fatalf("OnChange called %d times for one burst, want 1", n)
	}
}

func TestConfigWatcherReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	write(t, path, "v1")
	// An hour of debounce: only Reload can read the file in this test.
	c := startCW(t, path, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	changed, err := c.w.Reload(ctx)
	if err != nil || changed {
		t.Fatalf("Reload of unchanged file = %v, %v; want false, nil", changed, err)
	}
	c.wantRead(false)
	c.wantNoDelivery()

	write(t, path, "v2")
	changed, err = c.w.Reload(ctx)
	if err != nil || !changed {
		t.Fatalf("Reload after a change = %v, %v; want true, nil", changed, err)
	}
	c.wantRead(true)
	c.wantDelivery("v2")

	// A rejected config is offered again on the next Reload.
	write(t, path, "bad config")
	for i := 0; i < 2; i++ {
		changed, err = c.w.Reload(ctx)
		if err == nil || changed {
			t.Fatalf("Reload of a rejected config = %v, %v; want false and an error", changed, err)
		}
		c.wantRead(false)
	}
	if n := c.calls.Load(); n != 3 {
		t.Fatalf("OnChange called %d times, want 3 (v2 and the bad config twice)", n)
	}

	must(t, os.Remove(path))
	if _, err := c.w.Reload(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload of a missing file = %v, want ErrNotExist", err)
	}
	c.wantRead(false)
}

func TestConfigWatcherZeroCurrentDeliversFirstEvent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	c := startCW(t, path, 20*time.Millisecond) // the file does not exist yet
	write(t, path, "first")
	c.wantDelivery("first")
}

func TestConfigWatcherReloadNeedsRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "knockd.conf")
	write(t, path, "v1")
	w, err := New(path, [sha256.Size]byte{}, func([]byte, [sha256.Size]byte) error { return nil }, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.Reload(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reload without Run = %v, want DeadlineExceeded", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
