package eventlog

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
)

func TestJournaldEntries(t *testing.T) {
	deadline := time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		log    func(l hclog.Logger)
		msg    string
		pri    journal.Priority
		fields map[string]string
	}{
		{
			"stage", func(l hclog.Logger) {
				l.Info("10.0.0.2: ssh: Stage 1", event.KeyKind, event.Stage, "door", "ssh", "source", "10.0.0.2", "stage", 1)
			},
			"10.0.0.2: ssh: Stage 1", journal.PriNotice,
			map[string]string{"SESAME_EVENT": "stage", "SESAME_DOOR": "ssh", "SESAME_SOURCE": "10.0.0.2", "SESAME_STAGE": "1"},
		},
		{
			"grant with typed deadline", func(l hclog.Logger) {
				l.Info("ssh: running command: iptables -A INPUT -s 10.0.0.2 -j ACCEPT", event.KeyKind, event.Grant, "door", "ssh",
					"source", "10.0.0.2", "grant_id", "0123abcd", "deadline", deadline)
			},
			"ssh: running command: iptables -A INPUT -s 10.0.0.2 -j ACCEPT", journal.PriNotice,
			map[string]string{"SESAME_EVENT": "grant", "SESAME_DOOR": "ssh", "SESAME_SOURCE": "10.0.0.2",
				"SESAME_GRANT_ID": "0123abcd", "SESAME_DEADLINE": "2026-11-27T21:00:00Z"},
		},
		{
			"knockd's start line", func(l hclog.Logger) { l.Info("starting up, listening on eth0", event.KeyKind, event.Start) },
			"starting up, listening on eth0", journal.PriNotice, map[string]string{"SESAME_EVENT": "start"},
		},
		{
			"knockd's words without a kind", func(l hclog.Logger) { l.Info("starting up, listening on eth0") },
			"starting up, listening on eth0", journal.PriInfo, map[string]string{},
		},
		{
			"other info", func(l hclog.Logger) { l.Info("capture: filter installed", "ports", 3) },
			"capture: filter installed", journal.PriInfo, map[string]string{"SESAME_PORTS": "3"},
		},
		{
			"warn", func(l hclog.Logger) {
				l.Warn("config: reload failed, keeping the old config", "error", "line 3: bad port")
			},
			"config: reload failed, keeping the old config", journal.PriWarning, map[string]string{"SESAME_ERROR": "line 3: bad port"},
		},
		{
			"error", func(l hclog.Logger) { l.Error("10.0.0.2: ssh: command timeout", event.KeyKind, event.Revoke) },
			"10.0.0.2: ssh: command timeout", journal.PriErr, map[string]string{"SESAME_EVENT": "revoke"},
		},
		{
			"debug", func(l hclog.Logger) { l.Debug("packet", "port", 7000) },
			"packet", journal.PriDebug, map[string]string{"SESAME_PORT": "7000"},
		},
		{
			"trace", func(l hclog.Logger) { l.Trace("packet") },
			"packet", journal.PriDebug, map[string]string{},
		},
		{
			"rescue-open raised to warning", func(l hclog.Logger) {
				l.Info("rescue port opened: heartbeat missed", event.KeyKind, event.RescueOpen, "port", 22)
			},
			"rescue port opened: heartbeat missed", journal.PriWarning,
			map[string]string{"SESAME_EVENT": "rescue-open", "SESAME_PORT": "22"},
		},
		{
			"rescue-close at error stays error", func(l hclog.Logger) {
				l.Error("rescue port close failed", event.KeyKind, event.RescueClose)
			},
			"rescue port close failed", journal.PriErr, map[string]string{"SESAME_EVENT": "rescue-close"},
		},
		{
			"named and with", func(l hclog.Logger) {
				l.Named("grant").With("door", "web").Info("10.0.0.9: web: OPEN SESAME", event.KeyKind, event.Open, "source", "10.0.0.9")
			},
			"10.0.0.9: web: OPEN SESAME", journal.PriNotice,
			map[string]string{"SESAME_LOGGER": "sesamed.grant", "SESAME_DOOR": "web", "SESAME_EVENT": "open", "SESAME_SOURCE": "10.0.0.9"},
		},
		{
			"multi-line message kept verbatim", func(l hclog.Logger) { l.Info("line one\nline two") },
			"line one\nline two", journal.PriInfo, map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fj := useFakeJournald(t, true)
			var stderr bytes.Buffer
			l, err := New(Options{Level: hclog.Trace, Stderr: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if !l.JournaldActive() {
				t.Fatal("journald sink not active with journald reachable")
			}
			tt.log(l)
			got := fj.take()
			if len(got) != 1 {
				t.Fatalf("%d entries sent, want 1: %+v", len(got), got)
			}
			want := map[string]string{"SYSLOG_IDENTIFIER": "sesamed", "SYSLOG_FACILITY": "3"}
			for k, v := range tt.fields {
				want[k] = v
			}
			if got[0].msg != tt.msg || got[0].pri != tt.pri || !reflect.DeepEqual(got[0].fields, want) {
				t.Fatalf("sent\n  %q pri %d %v\nwant\n  %q pri %d %v", got[0].msg, got[0].pri, got[0].fields, tt.msg, tt.pri, want)
			}
			// Stderr is not the journal here: it gets the entry too.
			if !strings.Contains(stderr.String(), strings.SplitN(tt.msg, "\n", 2)[0]) {
				t.Errorf("stderr missing the entry: %q", stderr.String())
			}
		})
	}
}

func TestJournaldLevelFiltering(t *testing.T) {
	fj := useFakeJournald(t, true)
	var stderr bytes.Buffer
	l, err := New(Options{Level: hclog.Warn, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	logAll := func() {
		l.Trace("t")
		l.Debug("d")
		l.Info("i", event.KeyKind, event.Stage)
		l.Warn("w")
		l.Error("e")
	}
	msgs := func() string {
		var s []string
		for _, e := range fj.take() {
			s = append(s, e.msg)
		}
		return strings.Join(s, ",")
	}
	logAll()
	if got := msgs(); got != "w,e" {
		t.Errorf("at Warn, journald got %q, want w,e", got)
	}
	l.SetLevel(hclog.Debug) // the sink follows the root's level
	logAll()
	if got := msgs(); got != "d,i,w,e" {
		t.Errorf("at Debug, journald got %q, want d,i,w,e", got)
	}
	l.SetLevel(hclog.Off)
	logAll()
	if got := msgs(); got != "" {
		t.Errorf("at Off, journald got %q", got)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 6 {
		t.Errorf("stderr got %d lines, want 6:\n%s", n, stderr.String())
	}
}

func TestJournaldModes(t *testing.T) {
	tests := []struct {
		mode      Journald
		reachable bool
		active    bool
		wantErr   bool
	}{
		{JournaldAuto, true, true, false},
		{JournaldAuto, false, false, false},
		{JournaldOff, true, false, false},
		{JournaldOff, false, false, false},
	}
	for _, tt := range tests {
		fj := useFakeJournald(t, tt.reachable)
		l, err := New(Options{Journald: tt.mode, Stderr: io.Discard})
		if (err != nil) != tt.wantErr {
			t.Errorf("%v reachable=%v: err %v", tt.mode, tt.reachable, err)
			continue
		}
		if err != nil {
			continue
		}
		l.Info("x")
		if l.JournaldActive() != tt.active || (len(fj.take()) == 1) != tt.active {
			t.Errorf("%v reachable=%v: active %v, want %v", tt.mode, tt.reachable, l.JournaldActive(), tt.active)
		}
		l.Close()
	}
}
