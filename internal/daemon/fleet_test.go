package daemon

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// A grant's asker travels through etcd as one string and comes back as
// the same identity on every node.
func TestIdentityRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		auth, user, key string
		wire            string
	}{
		{"", "", "", ""},
		{"fwknop", "alice", "", "fwknop:alice"},
		{"ssh", "alice@laptop", "SHA256:abc", "ssh:alice@laptop SHA256:abc"},
		{"ssh", "a comment with spaces", "SHA256:abc", "ssh:a comment with spaces SHA256:abc"},
	} {
		wire := identity(tt.auth, tt.user, tt.key)
		if wire != tt.wire {
			t.Errorf("identity(%q, %q, %q) = %q, want %q", tt.auth, tt.user, tt.key, wire, tt.wire)
		}
		a := parseIdentity(wire)
		if a.Method != tt.auth || a.User != tt.user || a.Key != tt.key {
			t.Errorf("parseIdentity(%q) = %+v", wire, a)
		}
	}
}

// parseIdentity reads what another node wrote: whatever it is, the
// result fits the journal's bounds and prints back to a stable form.
func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{"", "fwknop:bob", "ssh:x SHA256:y", "ssh:", "fwknop:" + strings.Repeat("é", 200), "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // JSON values decode to valid UTF-8
		}
		a := parseIdentity(s)
		if len(a.User) > journal.MaxUserLen || len(a.Key) > journal.MaxKeyLen || !utf8.ValidString(a.User) {
			t.Fatalf("parseIdentity(%q) = %+v: out of the journal's bounds", s, a)
		}
		again := parseIdentity(identity(a.Method, a.User, a.Key))
		if again != a {
			t.Fatalf("parseIdentity(%q) = %+v, printed and read again %+v", s, a, again)
		}
	})
}

func TestSubset(t *testing.T) {
	p22, p443 := knock.Port{Num: 22, Proto: knock.TCP}, knock.Port{Num: 443, Proto: knock.TCP}
	u22 := knock.Port{Num: 22, Proto: knock.UDP}
	door := []knock.Port{p22, p443}
	for _, tt := range []struct {
		ps   []knock.Port
		want bool
	}{
		{[]knock.Port{p22}, true},
		{[]knock.Port{p443, p22}, true},
		{[]knock.Port{u22}, false},
		{[]knock.Port{p22, u22}, false},
	} {
		if got := subset(tt.ps, door); got != tt.want {
			t.Errorf("subset(%v) = %v, want %v", tt.ps, got, tt.want)
		}
	}
}
