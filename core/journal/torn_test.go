package journal

import (
	"bytes"
	"fmt"
	"testing"
)

// buildLog writes n grants (and revokes every third) through a real
// journal and returns the directory, the log image and the expected
// pending set.
func buildLog(t *testing.T, n int) (string, []byte, []Record) {
	t.Helper()
	dir := t.TempDir()
	j := mustOpen(t, dir)
	for i := 0; i < n; i++ {
		mustGrant(t, j, rec(i))
		if i%3 == 2 {
			if err := j.Revoked(rec(i-1).ID, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := j.Pending()
	j.Close()
	return dir, readLog(t, dir), want
}

// TestTornTailEveryOffset cuts the last frame at every byte: everything
// before it survives, the tail is cut off, and a following append lands
// where it can be read back.
func TestTornTailEveryOffset(t *testing.T) {
	dir, full, _ := buildLog(t, 4) // grants 0..3, revoke of 1 after grant 2
	offs := frameOffsets(t, full)
	last := offs[len(offs)-1]
	// Expected state without the last frame (the grant of 3).
	before := scan(full[:last]).st.pending()
	if len(before) != 2 {
		t.Fatalf("setup: %d pending before the last frame", len(before))
	}
	for cut := last; cut < len(full); cut++ {
		t.Run(fmt.Sprint(cut-last), func(t *testing.T) {
			writeLog(t, dir, full[:cut])
			rp, err := ReadPending(dir)
			if err != nil {
				t.Fatal(err)
			}
			samePending(t, "ReadPending", rp, before)
			j := mustOpen(t, dir)
			samePending(t, "Open", j.Pending(), before)
			if got := len(readLog(t, dir)); got != last {
				t.Fatalf("Open left %d bytes, want the tail cut to %d", got, last)
			}
			mustGrant(t, j, rec(7))
			j.Close()
			want := append(append([]Record{}, before...), rec(7))
			samePending(t, "after append", mustOpen(t, dir).Pending(), want)
			res := scan(readLog(t, dir))
			if res.tail != nil || len(res.skipped) != 0 {
				t.Fatalf("log still damaged after append: tail %v skipped %v", res.tail, res.skipped)
			}
		})
	}
}

// TestBitFlips flips bits in the last frame (tail damage) and in a middle
// frame (resync keeps the later frames).
func TestBitFlips(t *testing.T) {
	dir, full, want := buildLog(t, 6)
	offs := frameOffsets(t, full)
	lastOff := offs[len(offs)-1]
	tailWant := scan(full[:lastOff]).st.pending()

	// Middle: frame 1 is the grant of record 1, which is later revoked;
	// frame 2 is the grant of 2. Damaging frame 2 loses record 2 only.
	midOff, midEnd := offs[2], offs[3]
	var midWant []Record
	for _, r := range want {
		if r.ID != rec(2).ID {
			midWant = append(midWant, r)
		}
	}
	cases := []struct {
		name     string
		from, to int
		want     []Record
	}{
		{"last frame", lastOff, len(full), tailWant},
		{"middle frame", midOff, midEnd, midWant},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := c.from; i < c.to; i++ {
				// Every bit of the header; one bit per payload byte,
				// rotating, which keeps the test quick.
				bits := []int{(i - c.from) % 8}
				if i-c.from < headerLen {
					bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
				}
				for _, bit := range bits {
					b := bytes.Clone(full)
					b[i] ^= 1 << bit
					writeLog(t, dir, b)
					rp, err := ReadPending(dir)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("byte %d bit %d", i-c.from, bit)
					samePending(t, what, rp, c.want)
					j, err := Open(dir, nil)
					if err != nil {
						t.Fatalf("%s: Open: %v", what, err)
					}
					samePending(t, what+" Open", j.Pending(), c.want)
					j.Close()
					// Open cut the tail or rewrote the log: it is clean now.
					res := scan(readLog(t, dir))
					if res.tail != nil || len(res.skipped) != 0 {
						t.Fatalf("%s: log still damaged after Open: tail %v skipped %v", what, res.tail, res.skipped)
					}
				}
			}
		})
	}
}

// TestGarbage covers damage that is not a bit flip.
func TestGarbage(t *testing.T) {
	_, full, want := buildLog(t, 5)
	offs := frameOffsets(t, full)
	cases := []struct {
		name string
		data []byte
		want []Record
	}{
		{"zeros appended (preallocated tail)", append(bytes.Clone(full), make([]byte, 4096)...), want},
		{"garbage appended", append(bytes.Clone(full), []byte("garbage\n\x00\xff")...), want},
		{"magic alone at the end", append(bytes.Clone(full), magic...), want},
		{"zeros over the middle", func() []byte {
			b := bytes.Clone(full)
			copy(b[offs[1]:], make([]byte, offs[2]-offs[1]))
			return b
		}(), want}, // frame 1 is the grant of 1, revoked later: nothing live is lost
		{"garbage inserted between frames", func() []byte {
			b := append(bytes.Clone(full[:offs[3]]), []byte("\xffSJ1 not a frame at all")...)
			return append(b, full[offs[3]:]...)
		}(), want},
		{"empty file", nil, nil},
		{"only garbage", []byte("hello, world"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, c.data)
			rp, err := ReadPending(dir)
			if err != nil {
				t.Fatal(err)
			}
			samePending(t, "ReadPending", rp, c.want)
			j := mustOpen(t, dir)
			samePending(t, "Open", j.Pending(), c.want)
			mustGrant(t, j, rec(50))
			j.Close()
			samePending(t, "after append", mustOpen(t, dir).Pending(), append(append([]Record{}, c.want...), rec(50)))
		})
	}
}
