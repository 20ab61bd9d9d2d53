package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TextfileEvery is how often the daemon writes Metrics_File.
const TextfileEvery = 15 * time.Second

// tempName is where WriteFile writes before the rename: in path's
// directory (a rename is atomic only within one file system), hidden and
// not ending in .prom, so node_exporter's textfile collector never reads
// it.
func tempName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
}

// WriteFile writes g's families to path in the Prometheus text format,
// atomically: into a temporary file in the same directory, synced, then
// renamed over path, so a reader sees the old file or the new one, never
// a part. The file is mode 0644 whatever the umask: node_exporter runs as
// its own user. Outcomes: nil; an error naming path when gathering,
// writing or renaming failed (path then still holds the previous
// content, and the temporary file is removed).
func WriteFile(path string, g prometheus.Gatherer) (err error) {
	tmp := tempName(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("metrics file %s: %w", path, err)
		}
	}()
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	gerr := writeText(w, g)
	if gerr != nil && !errors.Is(gerr, errPartial) {
		return gerr
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is durable once the directory is synced; a failure here
	// leaves a complete file, old or new.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return gerr
}

// errPartial wraps a gathering error after which some families were
// still written.
var errPartial = errors.New("some families not gathered")

// writeText writes g's families to w in the text format.
func writeText(w io.Writer, g prometheus.Gatherer) error {
	mfs, gerr := g.Gather()
	if gerr != nil && len(mfs) == 0 {
		return gerr
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	if gerr != nil {
		return fmt.Errorf("%w: %w", errPartial, gerr)
	}
	return nil
}

// RemoveTemp removes a temporary file a killed writer left beside path.
func RemoveTemp(path string) error {
	if err := os.Remove(tempName(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
