package config

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(knockdDefault))
	f.Add([]byte("[options]\nInterface=eth0,eth1\nMaxAttempts=10\n[d]\nsequence=1:udp,2\ntcpflags=syn,!ack\nopen=22/tcp\n"))
	f.Add([]byte("[d]\nsequence=0\n"))
	f.Add([]byte("[d]\none_time_sequences=/nonexistent\n"))
	f.Add([]byte("x=1\n[]\n[d\n"))
	f.Add([]byte("[d\nsequence=1\nSEQ_TIMOUT=2\n[e] x\nLogFile=/l\n[options\nsequence=1\n"))
	f.Add([]byte("[a]\nsequence=1\nstop_command=x\n[b]\nsequence=1\nstop_command_6=y\nstart_command_6=\n"))
	f.Add([]byte("[options]\nMetrics=[::1]:10171\nMetrics_File=/var/lib/x.prom\n[d]\nsequence=1\n"))
	f.Add([]byte("[options]\nMetrics=0.0.0.0:1\nMetrics_File=/a/b.txt\n[d]\nsequence=1\n"))
	f.Add([]byte("[options]\nFleet_Endpoints=https://10.0.0.5:2379,https://[fd00::1]:2379\nFleet_Group=g\nFleet_Node=n\nFleet_CA=/ca\nFleet_Cert=/c\nFleet_Key=/k\n[d]\nsequence=1\nOpen=22/tcp\nFleet=yes\n"))
	f.Add([]byte("[options]\nFleet_Group=g\n[d]\nsequence=1\nFleet=on\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.conf", data)
		if err != nil {
			// Every error must be located.
			var ce *Error
			if !errors.As(err, &ce) || ce.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz.conf:") {
				t.Fatalf("unlocated error %q", err)
			}
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		for _, d := range c.Doors {
			if d.OneTimeFile == "" && (len(d.Sequence) == 0 || len(d.Sequence) > MaxSequence) {
				t.Fatalf("door %q accepted with %d elements", d.Name, len(d.Sequence))
			}
			for _, p := range d.Sequence {
				if p.Num == 0 || (p.Proto != 6 && p.Proto != 17) {
					t.Fatalf("door %q accepted bad element %v", d.Name, p)
				}
			}
			if d.SeqTimeout <= 0 || d.CmdTimeout < 0 {
				t.Fatalf("door %q accepted timeouts %v %v", d.Name, d.SeqTimeout, d.CmdTimeout)
			}
		}
		for _, w := range c.Warnings {
			// Every warning is located too.
			if !strings.HasPrefix(w, "fuzz.conf:") || strings.HasPrefix(w, "fuzz.conf:0:") {
				t.Fatalf("unlocated warning %q", w)
			}
		}
		if m := c.Options.Metrics; m.IsValid() && (m.Port() == 0 || m.Addr().Zone() != "" || m.Addr().Is4In6()) {
			t.Fatalf("Metrics %v accepted", m)
		}
		if f := c.Options.MetricsFile; f != "" && !strings.HasPrefix(f, "/") {
			t.Fatalf("Metrics_File %q accepted", f)
		}
		if err := c.Options.Fleet.Validate(); err != nil {
			t.Fatalf("fleet config accepted but invalid: %v", err)
		}
		for _, d := range c.Doors {
			if d.Fleet && !c.Options.Fleet.Enabled() {
				t.Fatalf("door %q shares its grants without a fleet", d.Name)
			}
		}
		if c.Options.MaxAttempts < 1 {
			t.Fatalf("MaxAttempts %d", c.Options.MaxAttempts)
		}
	})
}
