package metrics

import (
	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/grant"
)

// Sink returns the hclog sink that counts events: register it on the
// daemon's logger (an InterceptLogger hands it every entry, at every
// level). It routes on the entry's event.Kind and the fields core/event
// documents, never on the message:
//
//   - Grant at Info with a door: a grant applied (granted). Grant entries
//     at Error report a failed step; the reconcile's restored grants
//     (Warn, no door) are repairs.
//   - Open whose KeyOutcome is "ran start": a knockd-style start command
//     with nothing to undo (granted).
//   - Extend at Info: a holder's knock moved a deadline (extended).
//   - Refused without KeyAuth: a grant refused; with KeyAuth: an SPA or
//     SSH knock refused, by KeyReason.
//   - Revoke with KeyStatus done or forgotten: a revocation, by
//     KeyReason; Revoke at Error with KeyAttempt: a failed stop.
//
// An entry with KeySuppressed N counts N (a limiter's summary).
func (m *Metrics) Sink() hclog.SinkAdapter { return sink{m} }

type sink struct{ m *Metrics }

func (s sink) Accept(_ string, level hclog.Level, _ string, args ...any) {
	kind, ok := event.Of(args)
	if !ok {
		return
	}
	m := s.m
	switch kind {
	case event.Grant:
		if level == hclog.Info {
			m.countGrant(str(args, event.KeyDoor), ResultGranted, 1)
		}
	case event.Open:
		if str(args, event.KeyOutcome) == grant.RanStart.String() {
			m.countGrant(str(args, event.KeyDoor), ResultGranted, 1)
		}
	case event.Extend:
		if level == hclog.Info {
			m.countGrant(str(args, event.KeyDoor), ResultExtended, count(args))
		}
	case event.Refused:
		if has(args, event.KeyAuth) {
			m.spaRefusals.WithLabelValues(m.labels.reason("spa", str(args, event.KeyReason))).Add(float64(count(args)))
			return
		}
		m.countGrant(str(args, event.KeyDoor), ResultRefused, count(args))
	case event.Revoke:
		door := str(args, event.KeyDoor)
		switch st := str(args, event.KeyStatus); {
		case st == "done" || st == "forgotten":
			if d, ok := m.labels.door(door); ok && door != "" {
				m.revocations.WithLabelValues(d, m.labels.reason("revocation", str(args, event.KeyReason))).Inc()
			}
		case level >= hclog.Error && has(args, event.KeyAttempt):
			if d, ok := m.labels.door(door); ok && door != "" {
				m.stopFailures.WithLabelValues(d).Inc()
			}
		}
	}
}

func (m *Metrics) countGrant(door, result string, n uint64) {
	if door == "" || n == 0 {
		return
	}
	if d, ok := m.labels.door(door); ok {
		m.grants.WithLabelValues(d, result).Add(float64(n))
	}
}

// value returns the value of key among hclog key/values.
func value(args []any, key string) (any, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return args[i+1], true
		}
	}
	return nil, false
}

func has(args []any, key string) bool {
	_, ok := value(args, key)
	return ok
}

func str(args []any, key string) string {
	v, _ := value(args, key)
	switch v := v.(type) {
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return ""
}

// count is KeySuppressed's number, 1 without it.
func count(args []any) uint64 {
	v, ok := value(args, event.KeySuppressed)
	if !ok {
		return 1
	}
	switch n := v.(type) {
	case uint64:
		return n
	case int:
		if n >= 0 {
			return uint64(n)
		}
	case int64:
		if n >= 0 {
			return uint64(n)
		}
	case uint:
		return uint64(n)
	case uint32:
		return uint64(n)
	}
	return 1
}
