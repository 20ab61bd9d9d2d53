// Package configwatch notices changes to one config file, however it is
// replaced (in-place writes, renames, symlink swaps, a deleted and
// re-created directory), and hands new content to a callback; it also
// re-reads the file on demand (SIGHUP). It does not parse configs or
// decide whether one is acceptable: the callback does.
package configwatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// OnChange receives a config whose content differs from the running one,
// with its SHA-256. Returning an error rejects it: the running config
// stays, and the same content is offered again on the next file event or
// Reload (so a HUP repeats the error for the admin).
type OnChange func(content []byte, sum [sha256.Size]byte) error

// Options tune a Watcher. Zero values pick the defaults.
type Options struct {
	// Debounce is how long the directory must be quiet after an event
	// before the file is read (default 200ms), so that a burst of writes
	// is read once, after the last.
	Debounce time.Duration
	// MaxDelay caps how long a continuous stream of events can postpone
	// the read (default 10 × Debounce).
	MaxDelay time.Duration
	// Logger receives what only the watcher knows: an unreadable file, a
	// config directory gone or back, a queue overflow. What OnChange
	// decided is its caller's to log, once: the watcher logs it at debug
	// only. nil means hclog.NewNullLogger().
	Logger hclog.Logger
}

// Watcher notices changes to one config file and hands new content
// to an OnChange callback. It watches the file's directory, not the file:
// editors, `sed -i` and config managers replace the file by rename, which
// would end a watch on the file itself. It also watches the directories
// along the file's symlink chain, so Kubernetes-style `..data` swaps and
// a symlink into another directory are seen. Any event naming the file, a
// link in its chain or a `..`-prefixed name, and any queue overflow, counts
// as "maybe changed": after the debounce the file is read through its
// symlinks and delivered only if its SHA-256 differs from the running one.
//
// A directory deleted or moved away takes its watch with it: the watcher
// then watches the nearest directory above it that exists, and watches
// the directory again as soon as it is back (rm -rf and re-create, a
// config manager replacing the whole directory), reading the file then.
// The fsnotify watcher, the debounce timer and the running hash are owned
// by the goroutine in Run; OnChange is called from it, never concurrently.
type Watcher struct {
	path     string // absolute path as configured, symlinks not resolved
	onChange OnChange
	debounce time.Duration
	maxDelay time.Duration
	log      hclog.Logger
	fs       *fsnotify.Watcher
	reloads  chan chan reloadResult

	// Owned by the Run goroutine (and by New before Run).
	current     [sha256.Size]byte  // hash of the running (accepted) config
	interesting map[string]bool    // the path, its symlink chain and its target
	watched     map[string]bool    // directories added to fs
	ancestor    string             // watched while the config's directory is missing, else ""
	recheck     bool               // a watch was added after the last read: read again
	afterRead   func(changed bool) // test hook, called after every read
}

type reloadResult struct {
	changed bool
	err     error
}

// Read reads path through its symlinks and returns the content and
// its SHA-256, for the daemon's first load and for comparisons.
func Read(path string) ([]byte, [sha256.Size]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("read config %s: %w", path, err)
	}
	return b, sha256.Sum256(b), nil
}

// New starts watching path's directory (and those of its
// symlink chain) at once, so changes made before Run starts are not lost.
// current is the hash of the config the daemon already runs (from
// Read); the zero hash means none, and the first event delivers
// whatever the file holds. Call Run to process events and Close (or end
// Run) to release the watch.
func New(path string, current [sha256.Size]byte, onChange OnChange, opts Options) (*Watcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config watch %s: %w", path, err)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * opts.Debounce
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config watch %s: fsnotify: %w", abs, err)
	}
	w := &Watcher{
		path:     abs,
		onChange: onChange,
		debounce: opts.Debounce,
		maxDelay: opts.MaxDelay,
		log:      opts.Logger.With("path", abs),
		fs:       fw,
		reloads:  make(chan chan reloadResult),
		current:  current,
		watched:  map[string]bool{},
	}
	if err := fw.Add(filepath.Dir(abs)); err != nil {
		fw.Close()
		return nil, fmt.Errorf("config watch %s: watch directory %s: %w", abs, filepath.Dir(abs), err)
	}
	w.watched[filepath.Dir(abs)] = true
	w.refreshWatches()
	return w, nil
}

// Close releases the fsnotify watch. Run returns soon after. Safe to call
// more than once.
func (w *Watcher) Close() error {
	if err := w.fs.Close(); err != nil && !errors.Is(err, fsnotify.ErrClosed) {
		return fmt.Errorf("config watch %s: close: %w", w.path, err)
	}
	return nil
}

// Run processes file events and Reload requests until ctx is done (then it
// closes the watcher and returns nil) or the watcher is closed.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.Close()
	var (
		timer        = time.NewTimer(time.Hour)
		timerC       <-chan time.Time // nil while no read is pending
		firstPending time.Time
	)
	timer.Stop()
	defer timer.Stop()
	schedule := func(now time.Time) {
		if timerC == nil {
			firstPending = now
		}
		due := now.Add(w.debounce)
		if latest := firstPending.Add(w.maxDelay); due.After(latest) {
			due = latest
		}
		timer.Reset(due.Sub(now))
		timerC = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			if w.relevant(ev) {
				w.log.Trace("config directory event", "change", ev.String())
				schedule(time.Now())
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("config watch queue overflowed, re-reading config")
				schedule(time.Now())
				continue
			}
			w.log.Error("config watch error", "error", err)
		case <-timerC:
			timerC = nil
			w.check(false)
		case reply := <-w.reloads:
			timer.Stop()
			timerC = nil
			changed, err := w.check(true)
			reply <- reloadResult{changed, err}
		}
		if w.recheck && timerC == nil {
			// A directory came back (or joined the symlink chain) after
			// the last read: what was written there meanwhile made no
			// event we could see.
			w.recheck = false
			schedule(time.Now())
		}
	}
}

// Reload re-reads the file now, as SIGHUP asks: it always logs
// "re-reading config file" (knockd does too) and delivers the content to
// OnChange unless its hash equals the running config's — re-parsing the
// same bytes cannot change anything, so an unchanged HUP swaps nothing. It
// reports whether a new config was accepted; the error says why the file
// could not be read or OnChange rejected it. It needs Run to be running
// and waits at most until ctx is done.
func (w *Watcher) Reload(ctx context.Context) (changed bool, err error) {
	reply := make(chan reloadResult, 1)
	select {
	case w.reloads <- reply:
	case <-ctx.Done():
		return false, fmt.Errorf("config reload %s: %w", w.path, ctx.Err())
	}
	select {
	case r := <-reply:
		return r.changed, r.err
	case <-ctx.Done():
		return false, fmt.Errorf("config reload %s: %w", w.path, ctx.Err())
	}
}

// relevant reports whether ev may have changed what path resolves to:
// it names the path, a link on its chain or a `..` name; a watched
// directory itself went away; or, while the config's directory is
// missing, a directory on the way to it appeared.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if w.interesting[name] || w.watched[name] {
		return true
	}
	if w.ancestor != "" && strings.HasPrefix(filepath.Dir(w.path)+"/", name+"/") {
		return true
	}
	base := filepath.Base(name)
	return base == filepath.Base(w.path) || strings.HasPrefix(base, "..")
}

// check reads the file and delivers it if its hash changed.
func (w *Watcher) check(forced bool) (changed bool, err error) {
	if w.afterRead != nil {
		defer func() { w.afterRead(changed) }()
	}
	if forced {
		w.log.Debug("re-reading config file")
	}
	// Watch first, then read: a change after the read makes an event.
	// The read may move the symlink chain; a directory that joins it
	// after the read gets a second read (recheck).
	w.refreshWatches()
	content, sum, err := Read(w.path)
	if w.refreshWatches() {
		w.recheck = true
	}
	if err != nil {
		w.log.Warn("cannot read config file, keeping the running config", "error", err)
		return false, err
	}
	if sum == w.current {
		w.log.Debug("config file unchanged, keeping the running config")
		return false, nil
	}
	if err := w.onChange(content, sum); err != nil {
		w.log.Debug("new config rejected, keeping the running config", "error", err)
		return false, fmt.Errorf("config %s rejected: %w", w.path, err)
	}
	w.current = sum
	w.log.Debug("config changed, new config in effect", "sha256", fmt.Sprintf("%x", sum[:8]))
	return true, nil
}

// refreshWatches recomputes the symlink chain of path and watches the
// directories it passes through, so that a change anywhere along it is
// seen, and watches the config's own directory again when it was deleted
// and is back (until then, the nearest directory above it that exists).
// It reports whether it added a watch. Directories that left the chain
// stay watched until they vanish; their events are filtered by relevant.
func (w *Watcher) refreshWatches() (added bool) {
	// The kernel drops a watch with its directory (deleted, or moved
	// away); fsnotify then forgets it. Forget it here too, so that a
	// directory re-created at that path is watched again.
	live := make(map[string]bool)
	for _, p := range w.fs.WatchList() {
		live[filepath.Clean(p)] = true
	}
	for dir := range w.watched {
		if !live[dir] {
			delete(w.watched, dir)
		} else if _, err := os.Stat(dir); err != nil {
			_ = w.fs.Remove(dir)
			delete(w.watched, dir)
		}
	}
	main := filepath.Dir(w.path)
	if !w.watched[main] {
		if err := w.fs.Add(main); err == nil {
			w.watched[main] = true
			added = true
			if w.ancestor != "" {
				w.log.Info("config directory is back, watching it again", "dir", main)
			}
		} else {
			w.watchAncestor(main)
		}
	}
	if w.watched[main] && w.ancestor != "" {
		if !w.watched[w.ancestor] {
			_ = w.fs.Remove(w.ancestor)
		}
		w.ancestor = ""
	}
	chain := symlinkChain(w.path)
	w.interesting = make(map[string]bool, len(chain))
	for _, p := range chain {
		w.interesting[p] = true
		dir := filepath.Dir(p)
		if w.watched[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			w.log.Debug("cannot watch directory on the config's symlink chain", "dir", dir, "error", err)
			continue
		}
		w.watched[dir] = true
		added = true
	}
	return added
}

// watchAncestor watches the nearest existing directory above a missing
// config directory, so its return is an event.
func (w *Watcher) watchAncestor(main string) {
	for dir := filepath.Dir(main); ; dir = filepath.Dir(dir) {
		if dir == w.ancestor {
			if _, err := os.Stat(dir); err == nil {
				return
			}
		} else if err := w.fs.Add(dir); err == nil {
			if w.ancestor != "" && !w.watched[w.ancestor] {
				_ = w.fs.Remove(w.ancestor)
			}
			if w.ancestor == "" {
				w.log.Warn("config directory is gone; watching "+dir+" for it to come back", "dir", main)
			}
			w.ancestor = dir
			return
		}
		if filepath.Dir(dir) == dir {
			return
		}
	}
}

// symlinkChain returns path, every link target on the way to the final
// file (following links in the last component), and the fully resolved
// path. It stops quietly at the first missing link.
func symlinkChain(path string) []string {
	chain := []string{path}
	p := path
	for i := 0; i < 40; i++ {
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
		chain = append(chain, p)
	}
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		chain = append(chain, resolved)
	}
	return chain
}
