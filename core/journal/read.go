package journal

import (
	"fmt"
	"os"
	"path/filepath"
)

// ReadPending returns the unrevoked grants recorded in dir without taking
// the lock or changing anything, for `sesame grants` while the daemon is
// running or dead. A torn tail (an append in progress, or a crash) and
// damaged records are skipped silently; the only errors are I/O errors,
// including one wrapping fs.ErrNotExist when dir holds no journal.
func ReadPending(dir string) ([]Record, error) {
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil {
		return nil, fmt.Errorf("journal: read %s: %w", dir, err)
	}
	return scan(data).st.pending(), nil
}
