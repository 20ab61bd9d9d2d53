package preflight

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/fleet"
)

// fakeSystem is a machine where every check passes: root, every path
// writable, interfaces eth0 (up) and down0 (down), a default route on
// eth0, nftables found, no knockd. Tests change what they need.
func fakeSystem(t *testing.T) *system {
	t.Helper()
	old := sys
	t.Cleanup(func() { sys = old })
	sys = system{
		euid:   func() int { return 0 },
		access: func(string, uint32) error { return nil },
		link: func(name string) (bool, error) {
			switch name {
			case "eth0":
				return true, nil
			case "down0":
				return false, nil
			}
			return false, errNoInterface
		},
		defaultInterfaces: func() []string { return []string{"eth0"} },
		detect: func(context.Context) (firewall.Kind, string, error) {
			return firewall.NFTables, "no admin input rules found", nil
		},
		backend:   func(firewall.Kind) error { return nil },
		rescue:    func(firewall.Kind, firewall.RescueSpec) error { return nil },
		trustTree: func(string) error { return nil },
		trustPath: func(string) error { return nil },
		knockd:    func() []string { return nil },
		hostname:  func() (string, error) { return "host1", nil },
		fleet:     func(context.Context, fleet.Config) error { return nil },
	}
	return &sys
}

// load writes conf (with {{DIR}} replaced) as DIR/sesame.conf, loads and
// checks it.
func load(t *testing.T, dir, conf string, opts Options) (*config.Config, *Report) {
	t.Helper()
	path := filepath.Join(dir, "sesame.conf")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(conf, "{{DIR}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(context.Background(), path, opts)
}

func TestCheck(t *testing.T) {
	type want struct {
		errs  []string // substrings of the errors, in order; {{CONF}} is the config's path
		warns []string // substrings of the warnings after the config's own
		notes []string
	}
	door := "[d]\nsequence = 1\nstart_command = true\n"
	// Most cases name an interface that is up, to leave the default's note out.
	opt := "[options]\nInterface = eth0\n"
	tests := []struct {
		name  string
		conf  string
		opts  func(dir string) Options
		setup func(t *testing.T, dir string, s *system)
		want  want
	}{
		{name: "all good", conf: "[options]\nInterface = eth0\nLogFile = {{DIR}}/k.log\nPidFile = {{DIR}}/k.pid\n" + door},
		{name: "LogFile in a directory that does not exist", conf: opt + "\tLogFile = /nonexistent/dir/k.log\n" + door,
			want: want{errs: []string{"{{CONF}}:3: LogFile /nonexistent/dir/k.log: directory /nonexistent/dir does not exist"}}},
		{name: "LogFile through a symlink", conf: opt + "LogFile = {{DIR}}/link\n" + door,
			setup: func(t *testing.T, dir string, _ *system) {
				os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link"))
			},
			want: want{errs: []string{"{{CONF}}:3: LogFile {{DIR}}/link is a symbolic link: sesamed never writes through one"}}},
		{name: "LogFile a directory", conf: opt + "LogFile = {{DIR}}\n" + door,
			want: want{errs: []string{"{{CONF}}:3: LogFile {{DIR}} is not a regular file (a directory)"}}},
		{name: "LogFile a FIFO (opening it would block the start)", conf: opt + "LogFile = {{DIR}}/fifo\n" + door,
			setup: func(t *testing.T, dir string, _ *system) {
				if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: want{errs: []string{"LogFile {{DIR}}/fifo is not a regular file (a FIFO)"}}},
		{name: "LogFile on a read-only file system", conf: opt + "LogFile = {{DIR}}/k.log\n" + door,
			setup: func(t *testing.T, dir string, s *system) {
				s.access = func(p string, _ uint32) error {
					if p == dir {
						return syscall.EROFS
					}
					return nil
				}
			},
			want: want{errs: []string{"{{CONF}}:3: LogFile {{DIR}}/k.log cannot be created: directory {{DIR}} is not writable: read-only file system"}}},
		{name: "existing LogFile not writable", conf: opt + "LogFile = {{DIR}}/k.log\n" + door,
			setup: func(t *testing.T, dir string, s *system) {
				os.WriteFile(filepath.Join(dir, "k.log"), nil, 0o600)
				s.access = func(string, uint32) error { return syscall.EROFS }
			},
			want: want{errs: []string{"{{CONF}}:3: LogFile {{DIR}}/k.log is not writable: read-only file system"}}},
		{name: "relative LogFile", conf: opt + "LogFile = k.log\n" + door,
			want: want{warns: []string{"{{CONF}}:3: LogFile k.log is a relative path"}}},
		{name: "-g wins over LogFile and is blamed", conf: opt + "LogFile = {{DIR}}/k.log\n" + door,
			opts: func(string) Options { return Options{LogFile: "/nonexistent/g.log"} },
			want: want{errs: []string{"command line: -g /nonexistent/g.log: LogFile /nonexistent/g.log: directory /nonexistent does not exist"}}},
		{name: "PidFile with a second name", conf: opt + "PidFile = {{DIR}}/k.pid\n" + door,
			setup: func(t *testing.T, dir string, _ *system) {
				os.WriteFile(filepath.Join(dir, "k.pid"), nil, 0o600)
				os.Link(filepath.Join(dir, "k.pid"), filepath.Join(dir, "other"))
			},
			want: want{errs: []string{"{{CONF}}:3: PidFile {{DIR}}/k.pid has 2 names (a hard link)"}}},
		{name: "sandbox forbids LogFile, with the fix", conf: opt + "LogFile = {{DIR}}/k.log\n" + door,
			opts: func(dir string) Options {
				return Options{Sandbox: ParseUnit("u.service", []byte("[Service]\nProtectSystem=strict\nLogsDirectory=sesame\n"))}
			},
			want: want{errs: []string{"{{CONF}}:3: LogFile {{DIR}}/k.log is read-only (ProtectSystem=strict) under u.service, which lets sesamed write only to /var/log/sesame: " +
				"use a path below /var/log/sesame (LogFile = /var/log/sesame/k.log), or allow this one with `systemctl edit sesamed` and the lines\n\t[Service]\n\tReadWritePaths={{DIR}}"}}},
		{name: "Metrics_File in a directory that does not exist", conf: opt + "Metrics_File = /nonexistent/dir/sesame.prom\n" + door,
			want: want{errs: []string{"{{CONF}}:3: Metrics_File /nonexistent/dir/sesame.prom: directory /nonexistent/dir does not exist"}}},
		{name: "sandbox forbids Metrics_File, with the fix", conf: opt + "Metrics_File = {{DIR}}/sesame.prom\n" + door,
			opts: func(string) Options {
				return Options{Sandbox: ParseUnit("u.service", []byte("[Service]\nProtectSystem=strict\nReadWritePaths=-/var/lib/prometheus/node-exporter\n"))}
			},
			want: want{errs: []string{"use a path below /var/lib/prometheus/node-exporter (Metrics_File = /var/lib/prometheus/node-exporter/sesame.prom)"}}},
		{name: "sandbox allows LogFile", conf: opt + "LogFile = {{DIR}}/k.log\n" + door,
			opts: func(dir string) Options {
				return Options{Sandbox: ParseUnit("u.service", []byte("[Service]\nProtectSystem=strict\nReadWritePaths="+dir+"\n"))}
			}},
		{name: "one-time file the sandbox keeps read-only", conf: opt + "[d]\nstart_command = true\n\none_time_sequences = {{DIR}}/seqs\n",
			setup: func(t *testing.T, dir string, _ *system) {
				os.WriteFile(filepath.Join(dir, "seqs"), []byte(" 1,2\n"), 0o600)
			},
			opts: func(dir string) Options {
				return Options{Sandbox: ParseUnit("u.service", []byte("[Service]\nProtectSystem=strict\nStateDirectory=sesame\n"))}
			},
			want: want{errs: []string{"{{CONF}}:6: one_time_sequences {{DIR}}/seqs is read-only (ProtectSystem=strict) under u.service ... ReadWritePaths={{DIR}}/seqs"}}},
		{name: "missing and down interfaces warn", conf: "[options]\nInterface = eth0, wg0, down0\n" + door,
			want: want{warns: []string{"{{CONF}}:2: interface wg0 does not exist (yet): sesamed starts without it", "{{CONF}}:2: interface down0 is down"}}},
		{name: "-i wins over Interface", conf: "[options]\nInterface = eth0\n" + door,
			opts: func(string) Options { return Options{Interfaces: []string{"wg0"}} },
			want: want{warns: []string{"command line: -i wg0: interface wg0 does not exist (yet)"}}},
		{name: "default route's interfaces", conf: door, want: want{notes: []string{"no Interface set: sesamed listens on eth0 (the default route's)"}}},
		{name: "no default route", conf: door, setup: func(t *testing.T, _ string, s *system) { s.defaultInterfaces = func() []string { return nil } },
			want: want{warns: []string{"{{CONF}}: no Interface set and no default route: sesamed listens on eth0"}}},
		{name: "auto finds rules in two firewalls", conf: "[options]\nInterface=eth0\n[ssh]\nsequence = 1\nOpen = 22/tcp\n",
			setup: func(t *testing.T, _ string, s *system) {
				s.detect = func(context.Context) (firewall.Kind, string, error) {
					return firewall.Auto, "", fmt.Errorf("firewall: %w: iptables-legacy: 3 INPUT rules and nftables: table inet filter", firewall.ErrMixedFirewalls)
				}
			},
			want: want{errs: []string{"{{CONF}}:5: Firewall = auto: firewall: admin rules found in more than one firewall"}}},
		{name: "auto names what it finds", conf: "[options]\nInterface=eth0\n[ssh]\nsequence = 1\nOpen = 22/tcp\n",
			want: want{notes: []string{"Firewall = auto finds nftables (no admin input rules found)"}}},
		{name: "named firewall missing", conf: "[options]\nInterface=eth0\nFirewall = iptables-legacy\n[ssh]\nsequence = 1\nOpen = 22/tcp\n",
			setup: func(t *testing.T, _ string, s *system) {
				s.backend = func(firewall.Kind) error {
					return errors.New(`firewall: iptables-legacy backend: exec: "iptables-legacy": executable file not found in $PATH`)
				}
			},
			want: want{errs: []string{"{{CONF}}:3: Firewall = iptables-legacy: firewall: iptables-legacy backend: exec"}}},
		{name: "rescue without ipset", conf: "[options]\nInterface=eth0\nFirewall = iptables\nRescue_Ports = 22/tcp\n" + door,
			setup: func(t *testing.T, _ string, s *system) {
				s.rescue = func(firewall.Kind, firewall.RescueSpec) error { return firewall.ErrNoRescue }
			},
			want: want{errs: []string{"{{CONF}}:4: Rescue_Ports in iptables: rescue unavailable in this firewall"}}},
		{name: "no firewall needed, none asked", conf: "[options]\nInterface=eth0\n" + door,
			setup: func(t *testing.T, _ string, s *system) {
				s.detect = func(context.Context) (firewall.Kind, string, error) { t.Error("detect called"); return 0, "", nil }
			}},
		{name: "not root", conf: "[options]\nInterface=eth0\nLogFile = {{DIR}}/k.log\n[ssh]\nsequence = 1\nOpen = 22/tcp\n",
			setup: func(t *testing.T, _ string, s *system) {
				s.euid = func() int { return 1000 }
				s.access = func(string, uint32) error { t.Error("access checked without root"); return nil }
				s.detect = func(context.Context) (firewall.Kind, string, error) {
					t.Error("firewall probed without root")
					return 0, "", nil
				}
			},
			want: want{warns: []string{"not running as root: write permissions, the state directory and the firewall were not checked"}}},
		{name: "untrusted state directory", conf: "[options]\nInterface=eth0\n" + door,
			opts: func(dir string) Options { return Options{StateDir: dir} },
			setup: func(t *testing.T, _ string, s *system) {
				s.trustTree = func(string) error { return errors.New("writable by group or others (mode 0777)") }
			},
			want: want{errs: []string{"state directory {{DIR}}: writable by group or others"}}},
		{name: "SPA files good", conf: opt + "SPA_Access = {{DIR}}/access.conf\nSPA_Authorized_Keys = {{DIR}}/keys\n" + door,
			setup: func(t *testing.T, dir string, _ *system) { writeSPA(t, dir, spaAccess, spaKeys) },
			want: want{notes: []string{"SPA_Access {{DIR}}/access.conf: 1 fwknop stanzas, packets on 62201/udp",
				"SPA_Authorized_Keys {{DIR}}/keys: 1 SSH keys, knocks on 62201/udp", "Firewall = auto finds nftables"}}},
		{name: "SPA files with errors", conf: opt + "SPA_Access = {{DIR}}/access.conf\nSPA_Authorized_Keys = {{DIR}}/keys\n" + door,
			setup: func(t *testing.T, dir string, _ *system) {
				writeSPA(t, dir, spaAccess+"SOURCE ANY\nGPG_DECRYPT_ID ABCD\nENABLE_CMD_EXEC Y\n", spaKeys+"\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFGZA8CSTr0+8VP4zOI513CyTeuC3cnzCsq+xt1GZo+ bob\n")
			},
			want: want{errs: []string{"{{DIR}}/access.conf:6: GPG_DECRYPT_ID: GnuPG SPA is not supported",
				"{{DIR}}/access.conf:7: ENABLE_CMD_EXEC Y: Sesame does not support command messages",
				"{{DIR}}/keys:2: missing open="}, notes: []string{"Firewall = auto finds nftables"}}},
		{name: "SPA file missing", conf: opt + "SPA_Authorized_Keys = {{DIR}}/nokeys\n" + door,
			want: want{errs: []string{"{{CONF}}:3: SPA_Authorized_Keys {{DIR}}/nokeys: ... no such file"}, notes: []string{"Firewall = auto finds nftables"}}},
		{name: "SPA file hidden by the unit", conf: opt + "SPA_Authorized_Keys = /home/alice/.ssh/authorized_keys\n" + door,
			opts: func(string) Options {
				return Options{Sandbox: ParseUnit("sesamed.service", []byte("[Service]\nProtectHome=yes\n"))}
			},
			want: want{errs: []string{"{{CONF}}:3: SPA_Authorized_Keys /home/alice/.ssh/authorized_keys is inaccessible (ProtectHome=yes) under sesamed.service"}, notes: []string{"Firewall = auto finds nftables"}}},
		{name: "SPA file others can write", conf: opt + "SPA_Authorized_Keys = {{DIR}}/keys\n" + door,
			setup: func(t *testing.T, dir string, s *system) {
				writeSPA(t, dir, spaAccess, spaKeys)
				s.trustPath = func(string) error { return errors.New("writable by group or others (mode 0666)") }
			},
			want: want{warns: []string{"{{CONF}}:3: SPA_Authorized_Keys {{DIR}}/keys: writable by group or others (mode 0666): whoever can change it decides who gets in"},
				notes: []string{"SPA_Authorized_Keys {{DIR}}/keys: 1 SSH keys", "Firewall = auto finds nftables"}}},
		{name: "SPA needs the firewall", conf: opt + "SPA_Authorized_Keys = {{DIR}}/keys\n" + door,
			setup: func(t *testing.T, dir string, s *system) {
				writeSPA(t, dir, spaAccess, spaKeys)
				s.backend = func(firewall.Kind) error { return errors.New("nft: not found") }
			},
			want: want{errs: []string{"{{CONF}}:3: Firewall = nftables: nft: not found"},
				notes: []string{"SPA_Authorized_Keys {{DIR}}/keys: 1 SSH keys", "Firewall = auto finds nftables"}}},
		{name: "knockd running", conf: "[options]\nInterface=eth0\n" + door,
			setup: func(t *testing.T, _ string, s *system) {
				s.knockd = func() []string { return []string{"pid 7: /usr/sbin/knockd -i eth0"} }
			},
			want: want{warns: []string{"knockd is running (pid 7: /usr/sbin/knockd -i eth0): where it listens on an interface sesamed listens on, both act on every knock"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSystem(t)
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir, s)
			}
			opts := Options{}
			if tt.opts != nil {
				opts = tt.opts(dir)
			}
			cfg, rep := load(t, dir, tt.conf, opts)
			if cfg == nil {
				t.Fatalf("config did not load: %v", rep.Err())
			}
			subst := strings.NewReplacer("{{DIR}}", dir, "{{CONF}}", cfg.File)
			var errs []string
			for _, e := range rep.Errors {
				errs = append(errs, e.Error())
			}
			match(t, "errors", errs, tt.want.errs, subst)
			match(t, "warnings", rep.Warnings[len(cfg.Warnings):], tt.want.warns, subst)
			match(t, "notes", rep.Notes, tt.want.notes, subst)
			for _, e := range rep.Errors {
				var ce *config.Error
				if !errors.As(e, &ce) {
					t.Errorf("error %v is not located (*config.Error)", e)
				}
			}
		})
	}
}

// match checks that got has one entry per want, each containing it
// (" ... " separates parts that must come in that order).
func match(t *testing.T, what string, got, want []string, subst *strings.Replacer) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d, want %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
		return
	}
	for i := range want {
		rest := got[i]
		for _, part := range strings.Split(subst.Replace(want[i]), " ... ") {
			j := strings.Index(rest, part)
			if j < 0 {
				t.Errorf("%s[%d] = %q\nwant it to contain %q", what, i, got[i], part)
				break
			}
			rest = rest[j+len(part):]
		}
	}
}

// A config that does not parse reports its parse errors, located.
func TestLoadParseErrors(t *testing.T) {
	fakeSystem(t)
	cfg, rep := load(t, t.TempDir(), "[d]\nsequence = 0\nSEQ_TIMOUT = 5\n", Options{})
	if cfg != nil || len(rep.Errors) != 2 {
		t.Fatalf("cfg %v, errors %v", cfg, rep.Errors)
	}
	if !strings.Contains(rep.Errors[1].Error(), ":3: unknown option SEQ_TIMOUT; did you mean seq_timeout?") {
		t.Errorf("errors %v", rep.Errors)
	}
}

// Report.Interfaces is what sesamed captures on, as the notes and
// warnings say: -i, else Interface, else the default route's, else eth0.
func TestReportInterfaces(t *testing.T) {
	door := "[d]\nsequence = 1\nstart_command = true\n"
	tests := []struct {
		name, conf string
		flag       []string
		routes     []string
		want       string
	}{
		{"-i wins", "[options]\nInterface = eth0\n" + door, []string{"wg0", "eth1"}, []string{"eth2"}, "wg0,eth1"},
		{"Interface", "[options]\nInterface = eth0, down0\n" + door, nil, []string{"eth2"}, "eth0,down0"},
		{"default routes", door, nil, []string{"eth2", "wg0"}, "eth2,wg0"},
		{"no default route: knockd's eth0", door, nil, nil, "eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSystem(t)
			s.defaultInterfaces = func() []string { return tt.routes }
			_, rep := load(t, t.TempDir(), tt.conf, Options{Interfaces: tt.flag})
			if got := strings.Join(rep.Interfaces, ","); got != tt.want {
				t.Errorf("Interfaces = %q, want %q", got, tt.want)
			}
		})
	}
}

const (
	spaAccess = "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" +
		"HMAC_KEY_BASE64 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n"
	spaKeys = `open="tcp/22" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFGZA8CSTr0+8VP4zOI513CyTeuC3cnzCsq+xt1GZo+ alice`
)

func writeSPA(t *testing.T, dir, accessText, keys string) {
	t.Helper()
	for name, text := range map[string]string{"access.conf": accessText, "keys": keys} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
