package preflight

import (
	"strings"
	"testing"
)

// FuzzParseUnit: any unit text parses without panicking, and what it
// allows is decided by the deepest rule: a path the text names in
// ReadWritePaths= last, after ProtectSystem=strict, is writable.
func FuzzParseUnit(f *testing.F) {
	f.Add([]byte("[Service]\nProtectSystem=strict\nReadWritePaths=-/var/log/knockd.log /etc/knockd\nStateDirectory=sesame\n"), "/var/log/knockd.log")
	f.Add([]byte("[Service]\nReadOnlyPaths=/a \\\n /b\nInaccessiblePaths=-/a/b\nProtectHome=tmpfs\nPrivateTmp=yes\n"), "/a/b/c")
	f.Add([]byte("[Service]\nReadWritePaths=\n\"/x y\"\nLogsDirectory=a:b c\n[Install]\nReadWritePaths=/\n"), "/x")
	f.Fuzz(func(t *testing.T, unit []byte, p string) {
		sb := ParseUnit("fuzz.service", unit)
		sb.exists = func(string) bool { return true }
		ok1, priv1, why1 := sb.Writable("/" + p)
		ok2, priv2, why2 := sb.Writable("/" + p)
		if ok1 != ok2 || priv1 != priv2 || why1 != why2 {
			t.Fatalf("Writable is not deterministic")
		}
		if ok1 && why1 != "" && !priv1 {
			t.Fatalf("writable with a reason %q", why1)
		}
		_ = sb.WritablePlaces()
		if p == "" || strings.IndexFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
		}) >= 0 {
			return // a path name that needs no quoting in a unit
		}
		dir := "/fuzz/" + p
		last := ParseUnit("u", unit, []byte("[Service]\nProtectSystem=strict\nReadOnlyPaths=\nInaccessiblePaths=\nReadWritePaths="+dir+"\n"))
		last.exists = func(string) bool { return true }
		if ok, _, why := last.Writable(dir + "/f"); !ok {
			t.Fatalf("ReadWritePaths=%s set last, yet %s/f is %s", dir, dir, why)
		}
	})
}
