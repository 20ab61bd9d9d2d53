package metrics

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A reader polling the file while the writer rewrites it, each time with
// another size, always reads a whole file: it parses, ends in a newline,
// and holds every family with the value written last or earlier, never
// a mix. The temporary file is never a *.prom file (node_exporter
// reads only those).
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.prom")
	m := New("test")
	var mu sync.Mutex
	doors := 0
	m.SetSource(func(context.Context) State {
		mu.Lock()
		defer mu.Unlock()
		st := State{Doors: doors, GrantsActive: map[string]int{}}
		// The file grows and shrinks: a torn read would show.
		for i := 0; i < doors%50; i++ {
			st.GrantsActive[fmt.Sprintf("door%d", i)] = doors
		}
		return st
	})
	if err := WriteFile(path, m.Own()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var reads int
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				errs <- err
				return
			}
			reads++
			if err := wholeFile(b); err != nil {
				errs <- err
				return
			}
			if ms, _ := filepath.Glob(filepath.Join(dir, "*.prom")); len(ms) != 1 {
				errs <- fmt.Errorf("files a textfile collector would read: %v", ms)
				return
			}
		}
	}()
	for i := 1; i <= 300; i++ {
		mu.Lock()
		doors = i
		mu.Unlock()
		if err := WriteFile(path, m.Own()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads during 300 writes", reads)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
}

// wholeFile checks that b is a complete file as WriteFile writes it:
// it parses, and every grants gauge has the value of sesame_doors.
func wholeFile(b []byte) error {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return fmt.Errorf("torn file (%d bytes)", len(b))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("unparsable: %v\n%s", err, b)
	}
	d := fams["sesame_doors"]
	if d == nil {
		return fmt.Errorf("no sesame_doors:\n%s", b)
	}
	doors := d.Metric[0].GetGauge().GetValue()
	want := int(doors) % 50
	g := fams["sesame_grants_active"]
	if got := 0; g != nil {
		got = len(g.Metric)
		for _, m := range g.Metric {
			if m.GetGauge().GetValue() != doors {
				return fmt.Errorf("a mix of two files: doors %v, grants %v", doors, m.GetGauge().GetValue())
			}
		}
		if got != want {
			return fmt.Errorf("%d grants series, want %d", got, want)
		}
	} else if want != 0 {
		return fmt.Errorf("no grants series, want %d", want)
	}
	return nil
}

// A failed write leaves the previous file whole and no temporary file.
func TestWriteFileFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesame.prom")
	m := New("test")
	if err := WriteFile(path, m.Own()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	// The temporary file's name is taken by a directory: the write fails.
	if err := os.Mkdir(tempName(path), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, m.Own())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		t.Error("the previous file changed")
	}
	os.Remove(tempName(path))
	// A directory that does not exist: an error naming the path.
	if err := WriteFile(filepath.Join(dir, "missing", "x.prom"), m.Own()); err == nil || !os.IsNotExist(unwrapPath(err)) {
		t.Errorf("missing directory: %v", err)
	}
}

func unwrapPath(err error) error {
	for err != nil {
		if pe, ok := err.(*os.PathError); ok {
			return pe.Err
		}
		if u, ok := err.(interface{ Unwrap() error }); ok {
			err = u.Unwrap()
			continue
		}
		return err
	}
	return syscall.EINVAL
}
