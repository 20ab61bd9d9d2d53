package sshknock

import (
	"crypto/rand"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/sshtest"
)

var (
	serverAddr  = netip.MustParseAddr("192.0.2.1")
	serverAddr6 = netip.MustParseAddr("2001:db8::1")
	clientAddr  = netip.MustParseAddr("198.51.100.7")
	clientAddr6 = netip.MustParseAddr("2001:db8:1::7")
	t0          = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ssh22       = knock.Port{Num: 22, Proto: knock.TCP}
	https       = knock.Port{Num: 443, Proto: knock.TCP}
	dns         = knock.Port{Num: 53, Proto: knock.UDP}
)

// isLocal is the test host: serverAddr and serverAddr6.
func isLocal(a netip.Addr) bool { return a == serverAddr || a == serverAddr6 }

// memReplay is an in-memory replay cache (the daemon's is journaled).
type memReplay struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time
}

func newReplay() *memReplay { return &memReplay{m: make(map[[32]byte]time.Time)} }

func (r *memReplay) Seen(d [32]byte, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.m[d]
	return ok && !now.After(until)
}

func (r *memReplay) Add(d [32]byte, until time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[d]; ok {
		return false
	}
	r.m[d] = until
	return true
}

// Keys made once per test binary by ssh-keygen (RSA keys take a while).
var (
	keysOnce sync.Once
	keysDir  string
	keysErr  error
	genKeys  map[string]sshtest.Key
)

// keygenSpecs are the ssh-keygen keys tests use, by name.
var keygenSpecs = []struct {
	name, typ string
	bits      int
	pass      string
}{
	{"ed25519", "ed25519", 0, ""},
	{"ed25519b", "ed25519", 0, ""},
	{"ecdsa256", "ecdsa", 256, ""},
	{"ecdsa384", "ecdsa", 384, ""},
	{"ecdsa521", "ecdsa", 521, ""},
	{"rsa3072", "rsa", 3072, ""},
	{"rsa2048", "rsa", 2048, ""},
	{"locked", "ed25519", 0, "open sesame"},
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keysDir != "" {
		os.RemoveAll(keysDir)
	}
	os.Exit(code)
}

// keygen returns the named key made by ssh-keygen.
func keygen(t testing.TB, name string) sshtest.Key {
	t.Helper()
	sshtest.RequireOpenSSH(t)
	keysOnce.Do(func() {
		keysDir, keysErr = os.MkdirTemp("", "sshknock-keys")
		if keysErr != nil {
			return
		}
		genKeys = make(map[string]sshtest.Key)
		for _, s := range keygenSpecs {
			var k sshtest.Key
			if k, keysErr = sshtest.MakeKey(keysDir, s.name, s.typ, s.bits, s.pass, s.name+"@sesame.test"); keysErr != nil {
				return
			}
			genKeys[s.name] = k
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	k, ok := genKeys[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return k
}

// authLine is an authorized_keys line for pub with options.
func authLine(opts string, pub ssh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if opts != "" {
		line = opts + " " + line
	}
	if comment != "" {
		line += " " + comment
	}
	return line
}

// mustKeys parses authorized_keys lines (UTC for expiry-time).
func mustKeys(t testing.TB, lines ...string) *Keys {
	t.Helper()
	ks, err := parseKeys("authorized_keys", []byte(strings.Join(lines, "\n")+"\n"), time.UTC)
	if err != nil {
		t.Fatalf("parse keys: %v", err)
	}
	return ks
}

// newVerifier returns a Verifier of ks with the test host and a fresh cache.
func newVerifier(t testing.TB, ks *Keys, opts Options) (*Verifier, *memReplay) {
	t.Helper()
	r := newReplay()
	if opts.IsLocal == nil {
		opts.IsLocal = isLocal
	}
	if opts.SourceBudget == (Budget{}) {
		// The tests send from one address; TestSourceBudget tests this one.
		opts.SourceBudget = Budget{Every: time.Nanosecond, Burst: 1 << 30}
	}
	opts.Replay = r
	v, err := NewVerifier(ks, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v, r
}

// build signs a knock for the test server at t0 unless k says otherwise.
func build(t testing.TB, s ssh.Signer, k Knock, now time.Time) []byte {
	t.Helper()
	if !k.Server.IsValid() {
		k.Server = serverAddr
	}
	if k.Ports == nil {
		k.Ports = []knock.Port{ssh22}
	}
	pkt, err := Build(rand.Reader, s, k, now)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return pkt
}
