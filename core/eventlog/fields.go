package eventlog

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// maxFieldName is journald's limit on a field name's length.
const maxFieldName = 64

// fieldName turns an hclog key into a journald field name: SESAME_ plus
// the key upper-cased, with every character outside [A-Z0-9_] replaced by
// '_' (journald drops other names with only a warning) and cut to
// journald's 64 characters.
func fieldName(key string) string {
	var b strings.Builder
	b.WriteString("SESAME_")
	if key == "" {
		key = "key"
	}
	for _, r := range key {
		switch {
		case 'a' <= r && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxFieldName {
			break
		}
	}
	return b.String()[:min(b.Len(), maxFieldName)]
}

// formatValue renders a value the way an operator wants it in a journal
// field: times in RFC 3339 UTC, errors and Stringers by their text.
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		format, _ := v[0].(string)
		return fmt.Sprintf(format, v[1:]...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return string(v)
	}
	return fmt.Sprint(v)
}

// fields turns hclog key/value args into journald fields. A later key
// wins over an earlier one with the same field name; a value without a
// key gets hclog's EXTRA_VALUE_AT_END.
func fields(args []any) map[string]string {
	m := make(map[string]string, len(args)/2+2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			m[fieldName(hclog.MissingKey)] = formatValue(args[i])
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		m[fieldName(key)] = formatValue(args[i+1])
	}
	return m
}
