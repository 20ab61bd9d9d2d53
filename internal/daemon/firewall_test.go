package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// A backend that drops the guarded ports for everyone without a grant
// (nftables, which Firewall = auto picks on a host without rules) says so
// at warning, with the ports: at start, and again only when a reload
// changes them (issue 18). One that only adds accepts (iptables) does not.
func TestGuardedPortsSaidOnceAndOnChange(t *testing.T) {
	dir := t.TempDir()
	load := func(conf string) *config.Config {
		t.Helper()
		path := filepath.Join(dir, "sesame.conf")
		os.WriteFile(path, []byte(conf), 0o600)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ssh := load("[ssh]\nsequence = 7000\nOpen = 22/tcp\n")
	sshWeb := load("[options]\nFirewall = nftables\n[ssh]\nsequence = 7000\nOpen = 22/tcp\n[web]\nsequence = 7100\nOpen = 443/tcp\n")
	none := load("[log]\nsequence = 7200\n")
	for _, guards := range []bool{true, false} {
		var buf syncbuf.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
		fw := &recordingFirewall{noGuard: !guards}
		f := &firewalls{log: log, newBackend: func(firewall.Kind, hclog.Logger) (firewall.Backend, error) { return fw, nil }}
		var said []string
		seen := 0
		apply := func(cfg *config.Config) {
			t.Helper()
			p, err := f.prepare(cfg, guardedPorts(cfg))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.commit(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			said = append(said, drops(out[seen:]))
			seen = len(out)
		}
		for _, cfg := range []*config.Config{ssh, ssh, sshWeb, sshWeb, none, ssh} {
			apply(cfg)
		}
		want := []string{
			"[WARN]  Firewall = auto chose nftables: Sesame drops new connections to 22:tcp from every address without a grant",
			"",
			"[WARN]  nftables: Sesame drops new connections to 22:tcp,443:tcp from every address without a grant",
			"",
			"[INFO]  nftables: Sesame drops no port now",
			"[WARN]  Firewall = auto chose nftables: Sesame drops new connections to 22:tcp from",
		}
		if !guards {
			want = make([]string, len(want))
		}
		for i := range want {
			if !strings.HasPrefix(said[i], want[i]) {
				t.Errorf("guards %v, config %d: said %q, want %q", guards, i, said[i], want[i])
			}
		}
	}
}

// drops is the log's line about dropped ports, from its level on; "" when
// there is none.
func drops(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Sesame drops") {
			if i := strings.Index(l, "["); i >= 0 {
				return l[i:]
			}
		}
	}
	return ""
}
