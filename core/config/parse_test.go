package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

const knockdDefault = `[options]
	UseSyslog

[openSSH]
	sequence    = 7000,8000,9000
	seq_timeout = 5
	command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
	tcpflags    = syn

[closeSSH]
	sequence    = 9000,8000,7000
	seq_timeout = 5
	command     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
	tcpflags    = syn
`

func TestParseKnockdDefault(t *testing.T) {
	c, err := Parse("knockd.conf", []byte(knockdDefault))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Options.UseSyslog {
		t.Error("UseSyslog not set")
	}
	if len(c.Doors) != 2 {
		t.Fatalf("doors = %d, want 2", len(c.Doors))
	}
	d := c.Doors[0]
	want := []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.TCP}, {Num: 9000, Proto: knock.TCP}}
	if d.Name != "openSSH" || knock.FormatSequence(d.Sequence) != knock.FormatSequence(want) {
		t.Errorf("door 0 = %q %v", d.Name, d.Sequence)
	}
	if d.SeqTimeout != 5*time.Second || d.CmdTimeout != DefaultCmdTimeout {
		t.Errorf("timeouts = %v %v", d.SeqTimeout, d.CmdTimeout)
	}
	if d.Flags != (knock.FlagMask{Set: knock.SYN}) {
		t.Errorf("flags = %v", d.Flags)
	}
	if !d.Start.Set || !strings.Contains(d.Start.Text, "%IP%") || d.Stop.Set {
		t.Errorf("commands = %+v %+v", d.Start, d.Stop)
	}
	if d.Line != 4 {
		t.Errorf("door line = %d, want 4", d.Line)
	}
	if c.Options.MaxAttempts != DefaultMaxAttempts || c.Options.Firewall != "auto" {
		t.Errorf("defaults = %+v", c.Options)
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(t *testing.T, c *Config)
	}{
		{"aliases and case", "[d]\nSEQUENCE=1:UDP,2:tcp,3\nTimeout=7\nCommand=a\nCommand_6=b\nSTOP_COMMAND=c\nstop_command_6=d\ncmd_timeout=0\n", func(t *testing.T, c *Config) {
			d := c.Doors[0]
			if got := knock.FormatSequence(d.Sequence); got != "1:udp,2:tcp,3:tcp" {
				t.Errorf("sequence = %s", got)
			}
			if d.SeqTimeout != 7*time.Second || d.CmdTimeout != 0 {
				t.Errorf("timeouts %v %v", d.SeqTimeout, d.CmdTimeout)
			}
			if d.Start.Text != "a" || d.Start6.Text != "b" || d.Stop.Text != "c" || d.Stop6.Text != "d" {
				t.Errorf("commands %+v", d)
			}
		}},
		{"spaces in sequence", "[d]\nsequence = 7000, 8000:udp , 9000\n", func(t *testing.T, c *Config) {
			if got := knock.FormatSequence(c.Doors[0].Sequence); got != "7000:tcp,8000:udp,9000:tcp" {
				t.Errorf("sequence = %s", got)
			}
		}},
		{"sub-second timeout", "[d]\nsequence=1\nseq_timeout=0.5\n", func(t *testing.T, c *Config) {
			if c.Doors[0].SeqTimeout != 500*time.Millisecond {
				t.Errorf("timeout %v", c.Doors[0].SeqTimeout)
			}
		}},
		{"[Options] is a door", "[Options]\nsequence=1\n", func(t *testing.T, c *Config) {
			if len(c.Doors) != 1 || c.Doors[0].Name != "Options" {
				t.Errorf("doors %+v", c.Doors)
			}
		}},
		{"options twice is one section", "[options]\nLogFile=/a\n[d]\nsequence=1\n[options]\nPidFile=/p\n", func(t *testing.T, c *Config) {
			if len(c.Doors) != 1 || c.Options.LogFile != "/a" || c.Options.PidFile != "/p" {
				t.Errorf("doors %d, options %+v", len(c.Doors), c.Options)
			}
		}},
		{"tcpflags accumulate and negate", "[d]\nsequence=1\ntcpflags=syn\nTCPFlags=!ACK,urg\ntcpflags=!urg\n", func(t *testing.T, c *Config) {
			want := knock.FlagMask{Set: knock.SYN, Clear: knock.ACK | knock.URG}
			if c.Doors[0].Flags != want {
				t.Errorf("flags %v want %v", c.Doors[0].Flags, want)
			}
		}},
		{"empty _6 command is set", "[d]\nsequence=1\nstart_command=x %IP%\nstart_command_6=\n", func(t *testing.T, c *Config) {
			s, _ := c.Doors[0].Commands(true)
			s4, _ := c.Doors[0].Commands(false)
			if s != "" || s4 != "x %IP%" {
				t.Errorf("commands v6=%q v4=%q", s, s4)
			}
		}},
		{"_6 falls back independently", "[d]\nsequence=1\nstart_command=a\nstop_command=b\nstop_command_6=c\n", func(t *testing.T, c *Config) {
			s, st := c.Doors[0].Commands(true)
			if s != "a" || st != "c" {
				t.Errorf("v6 = %q %q", s, st)
			}
		}},
		{"options", "[options]\nLogFile=/var/log/knockd.log\nPidFile=/run/k.pid\nInterface=eth0, eth1\nMaxAttempts=100\nFirewall=NFTables\nUseSyslog = no\nReconcile_Interval=2\nRescue_Ports=22/tcp,53/udp\nRescue_After=10\nRescue_From=203.0.113.0/24,2001:db8::1\n", func(t *testing.T, c *Config) {
			o := c.Options
			if o.LogFile != "/var/log/knockd.log" || o.PidFile != "/run/k.pid" || o.UseSyslog {
				t.Errorf("options %+v", o)
			}
			if strings.Join(o.Interfaces, "|") != "eth0|eth1" || o.MaxAttempts != 100 || o.Firewall != "nftables" {
				t.Errorf("options %+v", o)
			}
			if o.ReconcileInterval != 2*time.Second || o.RescueAfter != 10*time.Second {
				t.Errorf("durations %+v", o)
			}
			if knock.FormatSequence(o.RescuePorts) != "22:tcp,53:udp" {
				t.Errorf("rescue ports %v", o.RescuePorts)
			}
			if len(o.RescueFrom) != 2 || o.RescueFrom[1] != netip.MustParsePrefix("2001:db8::1/128") {
				t.Errorf("rescue from %v", o.RescueFrom)
			}
		}},
		{"target and open", "[d]\nsequence=1\ntarget=10.0.0.9\nOpen=22/tcp, 443\nOpen_Timeout=30\n", func(t *testing.T, c *Config) {
			d := c.Doors[0]
			if d.Target != netip.MustParseAddr("10.0.0.9") || knock.FormatSequence(d.Open) != "22:tcp,443:tcp" || d.GrantTimeout() != 30*time.Second {
				t.Errorf("door %+v", d)
			}
		}},
		{"comments and blanks, CRLF", "# top\r\n\r\n[d]\r\n  # indented comment\r\nsequence=1\r\n", func(t *testing.T, c *Config) {
			if len(c.Doors) != 1 || len(c.Doors[0].Sequence) != 1 {
				t.Errorf("doors %+v", c.Doors)
			}
		}},
		{"usesyslog in a door section", "[d]\nsequence=1\nUseSyslog\n", func(t *testing.T, c *Config) {
			if !c.Options.UseSyslog {
				t.Error("UseSyslog not set")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.conf", []byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		conf string
		line int
		want string
	}{
		{"directive before section", "sequence=1\n", 1, "must belong to a section"},
		{"bad section name", "[]\n", 1, "bad section name"},
		{"no equals", "[d]\nsequence=1\nbogus\n", 3, "syntax error"},
		{"unknown door key", "[d]\nsequence=1\ncolour=red\n", 3, `unknown option colour`},
		{"unknown option", "[options]\nfoo=1\n", 2, `unknown option foo`},
		{"misspelt door key keeps the user's spelling", "[d]\nsequence=1\nSEQ_TIMOUT=5\n", 3, "unknown option SEQ_TIMOUT; did you mean seq_timeout?"},
		{"misspelt option", "[options]\nLog_Fiel = /x\n", 2, "unknown option Log_Fiel; did you mean LogFile?"},
		{"misspelt alias", "[d]\nsequence=1\ncomand=x\n", 3, "unknown option comand; did you mean command?"},
		{"misspelt key of the other section", "[options]\nsequense=1\n", 2, "did you mean sequence (which belongs in a door section)?"},
		{"odd characters quoted", "[d]\nsequence=1\nseq timeout!=1\n", 3, `unknown option "seq timeout!"`},
		{"door key in options", "[options]\nsequence=1\n", 2, "within a door section"},
		{"option in a door", "[d]\nsequence=1\nLogFile=/x\n", 3, "LogFile is a global option: it belongs in [options]"},
		{"header without ]", "[d]\nsequence=1\n[e\nsequence=2\n", 3, "section header [e lacks its closing ]"},
		{"text after ]", "[d] # ssh\nsequence=1\n", 1, "text after ] in section header"},
		{"port zero", "[d]\nsequence=0\n", 2, "out of range"},
		{"port too big", "[d]\nsequence=65536\n", 2, "out of range"},
		{"port not numeric", "[d]\nsequence=7000,abc\n", 2, "not a number"},
		{"negative port", "[d]\nsequence=-1\n", 2, "not a number"},
		{"empty element", "[d]\nsequence=7000,,9000\n", 2, "empty"},
		{"unknown protocol", "[d]\nsequence=7000:icmp\n", 2, "unknown protocol"},
		{"too long", "[d]\nsequence=" + strings.Repeat("1,", 32) + "1\n", 2, "at most 32"},
		{"empty sequence", "[options]\n[door1]\nseq_timeout=5\n", 2, `door "door1" has an empty knock sequence`},
		{"empty sequence value", "[d]\nsequence=\n", 2, "empty list"},
		{"bad seq_timeout", "[d]\nsequence=1\nseq_timeout=abc\n", 3, "not a number of seconds"},
		{"zero seq_timeout", "[d]\nsequence=1\nseq_timeout=0\n", 3, "more than zero"},
		{"bad cmd_timeout", "[d]\nsequence=1\ncmd_timeout=5s\n", 3, "not a number of seconds"},
		{"negative cmd_timeout", "[d]\nsequence=1\ncmd_timeout=-1\n", 3, "not a number of seconds"},
		{"unknown flag", "[d]\nsequence=1\ntcpflags=syn,foo\n", 3, `unrecognized flag "foo"`},
		{"bad target", "[d]\nsequence=1\ntarget=host.example\n", 3, "not an IP address"},
		{"bad maxattempts", "[options]\nMaxAttempts=lots\n[d]\nsequence=1\n", 2, "not a number"},
		{"zero maxattempts", "[options]\nMaxAttempts=0\n[d]\nsequence=1\n", 2, "out of range"},
		{"bad firewall", "[options]\nFirewall=pf\n[d]\nsequence=1\n", 2, "unknown backend"},
		{"bad open", "[d]\nsequence=1\nopen=ssh\n", 3, "not a number"},
		{"bad usesyslog value", "[options]\nUseSyslog=maybe\n", 2, "not yes or no"},
		{"bad interface", "[options]\nInterface=eth0,,eth1\n", 2, "empty interface"},
		{"bad rescue_from", "[options]\nRescue_From=10.0.0.0/33\n", 2, "not an address or prefix"},
		{"metrics host name", "[options]\nMetrics=localhost:10171\n", 2, "with an IP address"},
		{"metrics no port", "[options]\nMetrics=127.0.0.1\n", 2, "ADDRESS:PORT"},
		{"metrics port 0", "[options]\nMetrics=127.0.0.1:0\n", 2, "port 0"},
		{"metrics file relative", "[options]\n\nMetrics_File=sesame.prom\n", 3, "not an absolute path"},
		{"duplicate door", "[a]\nsequence=1\n[b]\nsequence=2\n[a]\nsequence=3\n", 5, `door "a" is already defined at line 1`},
		{"door name too long", "[" + strings.Repeat("x", 1025) + "]\nsequence=1\n", 1, "at most 1024"},
		{"door name not utf-8", "[d\xff]\nsequence=1\n", 1, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.conf", []byte(tt.conf))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.File != "t.conf" || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.want) {
				t.Errorf("error = %v, want t.conf:%d: ...%s...", err, tt.line, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "t.conf:") {
				t.Errorf("error text %q does not start with file:line", err)
			}
		})
	}
}

// Metrics and Metrics_File: typed at parse time; a listener that is not
// on loopback and a file node_exporter would not read are warnings with
// their line.
func TestParseMetrics(t *testing.T) {
	c, err := Parse("t.conf", []byte("[options]\nMetrics = [::1]:10171\nMetrics_File = /var/lib/prometheus/node-exporter/sesame.prom\n[d]\nsequence=1\nstart_command=x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Options.Metrics != netip.MustParseAddrPort("[::1]:10171") || c.Options.MetricsFile != "/var/lib/prometheus/node-exporter/sesame.prom" {
		t.Errorf("options %+v", c.Options)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %q", c.Warnings)
	}
	if c.Options.Lines.Of(KeyMetrics) != 2 || c.Options.Lines.Of(KeyMetricsFile) != 3 {
		t.Errorf("lines %d %d", c.Options.Lines.Of(KeyMetrics), c.Options.Lines.Of(KeyMetricsFile))
	}
	c, err = Parse("t.conf", []byte("[options]\nMetrics = 0.0.0.0:10171\nMetrics_File = /tmp/sesame.txt\n[d]\nsequence=1\nstart_command=x\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"t.conf:2: Metrics listens on 0.0.0.0:10171, which is not a loopback address", "t.conf:3: Metrics_File /tmp/sesame.txt does not end in .prom"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if c, _ := Parse("t.conf", []byte("[d]\nsequence=1\n")); c.Options.Metrics.IsValid() || c.Options.MetricsFile != "" {
		t.Errorf("metrics on by default: %+v", c.Options)
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("t.conf", []byte("[d]\nsequence=0\nseq_timeout=x\n"))
	if err == nil || !strings.Contains(err.Error(), "t.conf:2:") || !strings.Contains(err.Error(), "t.conf:3:") {
		t.Fatalf("err = %v, want both lines", err)
	}
}

func TestLoadOneTime(t *testing.T) {
	dir := t.TempDir()
	seqs := filepath.Join(dir, "seqs")
	if err := os.WriteFile(seqs, []byte("# used up\n bogus\n 1111,2222:udp\n 3333\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sesame.conf")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[d]\none_time_sequences = " + seqs + "\nstart_command=true\n")
	c, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if got := knock.FormatSequence(c.Doors[0].Sequence); got != "1111:tcp,2222:udp" {
		t.Errorf("sequence %s", got)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], ":2:") {
		t.Errorf("warnings %q, want the unparsable line 2", c.Warnings)
	}

	// Errors name the One_Time_Sequences line.
	write("[d]\none_time_sequences = " + filepath.Join(dir, "missing") + "\n")
	if _, err := Load(conf); err == nil || !strings.Contains(err.Error(), conf+":2:") {
		t.Errorf("missing file: err = %v", err)
	}

	// A directory cannot be opened for writing, even by root.
	write("[d]\none_time_sequences = " + dir + "\n")
	if _, err := Load(conf); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: err = %v", err)
	}

	// A symlink is refused (sesame check says so at the key's line).
	link := filepath.Join(dir, "link")
	os.Symlink(seqs, link)
	write("[d]\none_time_sequences = " + link + "\n")
	if _, err := Load(conf); err == nil || !strings.Contains(err.Error(), conf+":2:") || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: err = %v", err)
	}

	if os.Geteuid() != 0 { // root can write a 0400 file, so this case needs a non-root run
		ro := filepath.Join(dir, "ro")
		os.WriteFile(ro, []byte(" 1\n"), 0o400)
		write("[d]\none_time_sequences = " + ro + "\n")
		if _, err := Load(conf); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("read-only file: err = %v", err)
		}
	}

	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("#1\n#2\n"), 0o600)
	write("[d]\none_time_sequences = " + empty + "\n")
	c, err = Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Doors[0].Disabled || len(c.Warnings) == 0 {
		t.Errorf("exhausted file: disabled=%v warnings=%q", c.Doors[0].Disabled, c.Warnings)
	}
}

// A section header missing its ] is one error, not one per line after
// it: the lines below belong to that section, whatever they set.
func TestBrokenHeaderIsOneError(t *testing.T) {
	for _, conf := range []string{
		"[options]\nLogFile=/x\n[openSSH\nsequence=7000,8000,9000\nseq_timeout=5\ncommand=true\ntcpflags=syn\n",
		"[openSSH\nsequence=7000,8000,9000\nseq_timeout=5\ncommand=true\n[closeSSH]\nsequence=9000\n",
		"[options\nLogFile=/x\nInterface=eth0\n[d]\nsequence=1\n",
		"[a]\nsequence=1\n[b] [c]\nsequence=2\nstart_command=x\n",
	} {
		_, err := Parse("t.conf", []byte(conf))
		if err == nil {
			t.Fatalf("%q: no error", conf)
		}
		if n := len(strings.Split(err.Error(), "\n")); n != 1 {
			t.Errorf("%q: %d errors, want 1:\n%v", conf, n, err)
		}
	}
	// The values under a broken header are still checked.
	_, err := Parse("t.conf", []byte("[d\nsequence=1\nseq_timeout=abc\n"))
	if err == nil || !strings.Contains(err.Error(), "t.conf:1: section header") || !strings.Contains(err.Error(), "t.conf:3: Seq_Timeout") {
		t.Errorf("err = %v, want the header and the bad value", err)
	}
}

func TestLikelyMistakesWarn(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string // substrings, one warning each, in order
	}{
		{"same sequence", "[a]\nsequence=1,2\nstart_command=x\n[b]\nsequence=1:tcp, 2\nstart_command=y\n",
			[]string{`t.conf:5: door "b" has the same sequence as door "a" (line 2): one knock opens both`}},
		{"different protocols differ", "[a]\nsequence=1,2\nstart_command=x\n[b]\nsequence=1,2:udp\nstart_command=y\n", nil},
		{"no command nor Open", "[options]\n[quiet]\nsequence=1\n", []string{`t.conf:2: door "quiet" has neither a start_command nor Open`}},
		{"empty start command", "[d]\nsequence=1\nstart_command=\n", []string{`t.conf:1: door "d" has neither`}},
		{"IPv6 command only is a command", "[d]\nsequence=1\nstart_command_6=x\n", nil},
		{"Open only", "[d]\nsequence=1\nOpen=22\n", nil},
		{"stop without start", "[d]\nsequence=1\nOpen=22\nstop_command=iptables -D\n",
			[]string{`t.conf:4: door "d": stop_command without start_command never runs`}},
		{"stop_6 without a start for IPv6", "[d]\nsequence=1\nstart_command=a\nstart_command_6=\nstop_command_6=b\n",
			[]string{`t.conf:5: door "d": stop_command_6 without a start command for IPv6 never runs`}},
		{"stop falls back for IPv6: fine", "[d]\nsequence=1\nstart_command=a\nstart_command_6=\nstop_command=b\n", nil},
		{"knockd's default config", knockdDefault, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.conf", []byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Warnings) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q, want %q in it", c.Warnings[i], w)
				}
			}
		})
	}
}

func TestKeyLines(t *testing.T) {
	c, err := Parse("t.conf", []byte("[options]\n\tLogFile = /a\n\n[d]\n  timeout = 3\nsequence=1\ncommand=x\nSEQ_TIMEOUT=4\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Doors[0]
	for k, want := range map[Key]int{KeySeqTimeout: 8, KeySequence: 6, KeyStartCommand: 7, KeyOpen: 4} {
		if got := d.KeyLine(k); got != want {
			t.Errorf("door line of %v = %d, want %d", k, got, want)
		}
	}
	if got := c.Options.Lines.Of(KeyLogFile); got != 2 {
		t.Errorf("LogFile line %d, want 2", got)
	}
	if got := c.Options.Lines.Of(KeyPidFile); got != 0 {
		t.Errorf("unset PidFile line %d, want 0", got)
	}
}

func TestLikelyMistakesAreCounted(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "[d%d]\nsequence=%d\n", i, 1000+i)
	}
	c, err := Parse("t.conf", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != maxSameWarnings+1 || c.Warnings[maxSameWarnings] != "t.conf: 15 more doors have neither a start_command nor Open (not listed one by one)" {
		t.Errorf("warnings %q", c.Warnings)
	}
}

func TestParseSPAOptions(t *testing.T) {
	c, err := Parse("s.conf", []byte("[options]\n\tSPA_Access = /etc/fwknop/access.conf\n\tSPA_Authorized_Keys = /etc/sesame/authorized_keys\n\tSPA_Port = 4444/udp\n\tSPA_Max_Age = 60\n[d]\n\tsequence = 1,2\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options
	if o.SPAAccess != "/etc/fwknop/access.conf" || o.SPAAuthorizedKeys != "/etc/sesame/authorized_keys" || o.SPAPort != 4444 || o.SPAMaxAge != time.Minute || !o.SPA() {
		t.Errorf("options = %+v", o)
	}
	if o.Lines.Of(KeySPAPort) != 4 || o.Lines.Of(KeySPAAccess) != 2 {
		t.Errorf("lines: SPA_Port %d, SPA_Access %d", o.Lines.Of(KeySPAPort), o.Lines.Of(KeySPAAccess))
	}
	d, err := Parse("d.conf", []byte("[d]\nsequence = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Options.SPAPort != DefaultSPAPort || d.Options.SPAMaxAge != DefaultSPAMaxAge || d.Options.SPA() {
		t.Errorf("defaults = %d %v %v", d.Options.SPAPort, d.Options.SPAMaxAge, d.Options.SPA())
	}
	for _, v := range []string{"62201", "62201/udp", "62201:UDP"} {
		c, err := Parse("p.conf", []byte("[options]\nSPA_Port = "+v+"\n[d]\nsequence = 1\n"))
		if err != nil || c.Options.SPAPort != 62201 {
			t.Errorf("SPA_Port = %s: %v", v, err)
		}
	}
}

func TestParseSPAErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"[options]\nSPA_Port = 62201/tcp\n[d]\nsequence = 1\n", "p.conf:2: SPA_Port: \"62201/tcp\": SPA packets are UDP"},
		{"[options]\nSPA_Port = 0\n[d]\nsequence = 1\n", "p.conf:2: SPA_Port: bad port"},
		{"[options]\nSPA_Max_Age = 1.5\n[d]\nsequence = 1\n", "p.conf:2: SPA_Max_Age: \"1.5\" is not a number"},
		{"[options]\nSPA_Max_Age = 0\n[d]\nsequence = 1\n", "p.conf:2: SPA_Max_Age: 0 is out of range"},
		{"[options]\nSPA_Access =\n[d]\nsequence = 1\n", "p.conf:2: SPA_Access: empty path"},
		{"[d]\nsequence = 1\nSPA_Port = 1\n", "p.conf:3: SPA_Port is a global option"},
		{"[options]\nSPA_Access = /a\n[d]\nsequence = 7000,62201:udp\n", "p.conf:4: door \"d\" knocks on 62201/udp, the SPA_Port (its default)"},
		{"[options]\nSPA_Authorized_Keys = /k\nSPA_Port = 9/udp\n[d]\nsequence = 9:udp\n", "p.conf:5: door \"d\" knocks on 9/udp, the SPA_Port (line 3)"},
	} {
		_, err := Parse("p.conf", []byte(c.conf))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.conf, err, c.want)
		}
	}
	// Without SPA a door may knock on 62201/udp, as in knockd.
	if _, err := Parse("p.conf", []byte("[d]\nsequence = 62201:udp\n")); err != nil {
		t.Error(err)
	}
}
