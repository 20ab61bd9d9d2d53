package fleet

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: Parse never panics, refuses with a *ValueError, and what it
// accepts marshals back to a value that parses to the same grant.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodValue))
	f.Add([]byte(`{"v":1,"id":"x","door":"web","source":"2001:db8::7","ports":[],"deadline":"2026-01-02T03:04:05+02:00","origin":"n"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"v":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, value []byte) {
		g, err := Parse(value)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v does not match ErrBadValue", err)
			}
			return
		}
		b, err := g.Marshal()
		if err != nil {
			t.Fatalf("accepted %q but cannot marshal it: %v", value, err)
		}
		g2, err := Parse(b)
		if err != nil {
			t.Fatalf("marshalled %q does not parse: %v", b, err)
		}
		b2, _ := g2.Marshal()
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed %q to %q", b, b2)
		}
	})
}
