package eventlog

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestFieldName(t *testing.T) {
	tests := []struct{ key, want string }{
		{"event", "SESAME_EVENT"},
		{"door", "SESAME_DOOR"},
		{"source", "SESAME_SOURCE"},
		{"grant_id", "SESAME_GRANT_ID"},
		{"deadline", "SESAME_DEADLINE"},
		{"stage", "SESAME_STAGE"},
		{"Cmd_Timeout", "SESAME_CMD_TIMEOUT"},
		{"exit-code", "SESAME_EXIT_CODE"},
		{"a.b c/d", "SESAME_A_B_C_D"},
		{"_private", "SESAME__PRIVATE"},
		{"9lives", "SESAME_9LIVES"},
		{"tür", "SESAME_T_R"},
		{"", "SESAME_KEY"},
		{strings.Repeat("x", 100), "SESAME_" + strings.Repeat("X", 64-len("SESAME_"))},
	}
	for _, tt := range tests {
		got := fieldName(tt.key)
		if got != tt.want {
			t.Errorf("fieldName(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if !validJournalField(got) {
			t.Errorf("fieldName(%q) = %q, which journald would drop", tt.key, got)
		}
	}
}

// validJournalField is journald's rule (journal_field_valid): 1-64
// characters of [A-Z0-9_], not starting with '_' or a digit.
func validJournalField(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '_' || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{"x", "x"},
		{nil, ""},
		{42, "42"},
		{uint16(22), "22"},
		{true, "true"},
		{time.Date(2026, 11, 27, 22, 0, 0, 0, time.FixedZone("CET", 3600)), "2026-11-27T21:00:00Z"},
		{time.Date(2026, 11, 27, 21, 0, 0, 500000000, time.UTC), "2026-11-27T21:00:00.5Z"},
		{30 * time.Second, "30s"},
		{errors.New("boom"), "boom"},
		{netip.MustParseAddr("fd77::2"), "fd77::2"},
		{hclog.Fmt("%d-%s", 3, "x"), "3-x"},
		{hclog.Hex(255), "0xff"},
		{hclog.Octal(8), "010"},
		{hclog.Binary(5), "0b101"},
		{hclog.Quote("q"), "q"},
		{[]int{1, 2}, "[1 2]"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.v); got != tt.want {
			t.Errorf("formatValue(%#v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		name string
		args []any
		want map[string]string
	}{
		{"none", nil, map[string]string{}},
		{"pairs", []any{"door", "ssh", "stage", 2}, map[string]string{"SESAME_DOOR": "ssh", "SESAME_STAGE": "2"}},
		{"odd", []any{"door", "ssh", "dangling"}, map[string]string{"SESAME_DOOR": "ssh", "SESAME_EXTRA_VALUE_AT_END": "dangling"}},
		{"later wins", []any{"grant-id", "a", "grant_id", "b"}, map[string]string{"SESAME_GRANT_ID": "b"}},
		{"non-string key", []any{7, "x"}, map[string]string{"SESAME_7": "x"}},
	}
	for _, tt := range tests {
		if got := fields(tt.args); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: fields(%v) = %v, want %v", tt.name, tt.args, got, tt.want)
		}
	}
}
