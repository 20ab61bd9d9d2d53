package main

import (
	"strings"
	"testing"
)

// FuzzRC: any rc file text parses without panicking, every param keeps
// its line, and applying a param either works or fails with an error
// that starts with the variable's name.
func FuzzRC(f *testing.F) {
	f.Add("[default]\nKEY_BASE64 MDEyMw==\nHMAC_KEY_BASE64: aGk= # c\nACCESS tcp/22;x\nALLOW_IP source\nTIME_OFFSET -5m\n")
	f.Add("# c\n;c\n  [Srv]\nSPA_SERVER 192.0.2.1\nFW_TIMEOUT 30\nbad\n[default]\nUSE_HMAC Y\n")
	f.Fuzz(func(t *testing.T, text string) {
		rc := parseRC([]byte(text))
		for name, params := range rc {
			if name != strings.ToLower(name) {
				t.Fatalf("stanza name %q not lower-cased", name)
			}
			last := 0
			for _, p := range params {
				if p.line <= last {
					t.Fatalf("params out of line order: %+v", params)
				}
				last = p.line
				o := defaultSPAOptions()
				if err := applyRC(p, &o); err != nil && p.name != "" && !strings.HasPrefix(err.Error(), p.name) {
					t.Fatalf("error %q does not start with the variable %q", err, p.name)
				}
			}
		}
	})
}
