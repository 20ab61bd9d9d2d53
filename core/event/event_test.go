package event

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	dl := time.Date(2026, 11, 27, 22, 0, 0, 500, time.FixedZone("CET", 3600))
	for _, tt := range []struct {
		ev    Event
		extra []any
		want  []any
	}{
		{Event{Kind: Stage, Door: "ssh", Source: src}, []any{KeyStage, 2},
			[]any{"event", Stage, "door", "ssh", "source", "192.0.2.7", "stage", 2}},
		{Event{Kind: Grant, Door: "ssh", Source: src, GrantID: "g1", Deadline: dl}, nil,
			[]any{"event", Grant, "door", "ssh", "source", "192.0.2.7", "grant_id", "g1", "deadline", "2026-11-27T21:00:00.0000005Z"}},
		{Event{Kind: RescueOpen}, []any{"ports", "22:tcp"}, []any{"event", RescueOpen, "ports", "22:tcp"}},
		{Event{Kind: Grant, Door: "ssh", Source: src, GrantID: "g2", Auth: AuthSSH, User: "alice@laptop", Key: "SHA256:x"}, nil,
			[]any{"event", Grant, "door", "ssh", "source", "192.0.2.7", "grant_id", "g2", "auth", "ssh", "user", "alice@laptop", "key", "SHA256:x"}},
		{Event{Kind: Refused, Source: src, Auth: AuthFwknop}, []any{KeyReason, "stale"},
			[]any{"event", Refused, "source", "192.0.2.7", "auth", "fwknop", "user", "", "reason", "stale"}},
	} {
		if got := tt.ev.Args(tt.extra...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.Args(%v) = %v, want %v", tt.ev, tt.extra, got, tt.want)
		}
	}
}

func TestOf(t *testing.T) {
	for _, tt := range []struct {
		args []any
		kind Kind
		ok   bool
	}{
		{Event{Kind: Open, Door: "ssh"}.Args(), Open, true},
		{[]any{"door", "ssh", KeyKind, Expire}, Expire, true},
		{[]any{KeyKind, "stage"}, "", false}, // a plain string is no Kind
		{[]any{"door", "ssh"}, "", false},
		{[]any{KeyKind}, "", false},
		{nil, "", false},
	} {
		if kind, ok := Of(tt.args); kind != tt.kind || ok != tt.ok {
			t.Errorf("Of(%v) = %q, %v; want %q, %v", tt.args, kind, ok, tt.kind, tt.ok)
		}
	}
	if !RescueOpen.Alarm() || !RescueClose.Alarm() || Grant.Alarm() {
		t.Error("Alarm: only the rescue's kinds are alarms")
	}
}
