package metrics

import (
	"strings"
	"sync"
)

// labels bounds the label values that events bring: doors and reasons.
type labels struct {
	mu sync.Mutex // guards all following fields
	// running are the running config's doors; gone the doors a reload
	// removed (not counted until a config has them again); extra the
	// other doors seen (SPA stanzas), at most MaxExtraDoors.
	running map[string]bool
	gone    map[string]bool
	extra   map[string]bool
	// reasons holds, per family, the reason values seen (at most
	// MaxReasons each).
	reasons map[string]map[string]bool
}

func (l *labels) init() {
	l.running, l.gone, l.extra = map[string]bool{}, map[string]bool{}, map[string]bool{}
	l.reasons = map[string]map[string]bool{}
}

// setDoors makes doors the running ones and returns the doors whose
// series must go: those of the earlier config (or seen as extra) that
// doors lacks.
func (l *labels) setDoors(doors []string) (removed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make(map[string]bool, len(doors))
	for _, d := range doors {
		next[d] = true
		delete(l.gone, d)
		delete(l.extra, d)
	}
	for d := range l.running {
		if !next[d] {
			l.gone[d] = true
			removed = append(removed, d)
		}
	}
	l.running = next
	return removed
}

// door returns the label value for an event of door, and false when it
// is not counted (a door the running config removed).
func (l *labels) door(door string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.running[door] || l.extra[door]:
		return door, true
	case l.gone[door]:
		return "", false
	case len(l.extra) < MaxExtraDoors:
		l.extra[door] = true
		return door, true
	}
	return OtherDoor, true
}

// activeDoor is door for sesame_grants_active, a gauge read from the
// grants themselves: a removed door's grants still show until they end.
func (l *labels) activeDoor(door string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[door] || l.extra[door] || l.gone[door] {
		return door, true
	}
	if len(l.extra) < MaxExtraDoors {
		l.extra[door] = true
		return door, true
	}
	return OtherDoor, true
}

// reason returns the label value of a reason of family: in Prometheus'
// style (lower case, '_' between words: "bad HMAC" is bad_hmac), and
// OtherReason past MaxReasons distinct values.
func (l *labels) reason(family, r string) string {
	r = labelValue(r)
	if r == "" {
		r = "unknown"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.reasons[family]
	if seen == nil {
		seen = map[string]bool{}
		l.reasons[family] = seen
	}
	if seen[r] {
		return r
	}
	if len(seen) >= MaxReasons {
		return OtherReason
	}
	seen[r] = true
	return r
}

// labelValue lower-cases s and joins its runs of letters and digits with
// single underscores; it is cut at 64 bytes.
func labelValue(s string) string {
	var b strings.Builder
	sep := false
	for _, c := range strings.ToLower(s) {
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			sep = false
			b.WriteRune(c)
			if b.Len() >= 64 {
				break
			}
			continue
		}
		sep = true
	}
	return b.String()
}
