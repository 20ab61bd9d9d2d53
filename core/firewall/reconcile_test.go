package firewall

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// fakeBackend holds grants in memory and records every call Reconcile
// makes, so the diff logic is tested without a kernel.
type fakeBackend struct {
	grants    []Grant // what List returns, in order
	calls     []string
	recreated bool
	baseErr   error
	listErr   error
	failOn    map[string]error // "grant a" / "revoke a" -> error
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Setup(context.Context, []knock.Port) error {
	f.calls = append(f.calls, "setup")
	return nil
}
func (f *fakeBackend) Teardown(context.Context) error { return nil }

func (f *fakeBackend) EnsureBase(context.Context) (bool, error) {
	f.calls = append(f.calls, "base")
	return f.recreated, f.baseErr
}

func (f *fakeBackend) List(context.Context) ([]Grant, error) {
	f.calls = append(f.calls, "list")
	return append([]Grant(nil), f.grants...), f.listErr
}

func (f *fakeBackend) Grant(_ context.Context, g Grant, now time.Time) error {
	call := "grant " + g.ID
	f.calls = append(f.calls, call)
	if err := f.failOn[call]; err != nil {
		return err
	}
	if !g.Deadline.After(now) {
		return ErrExpired
	}
	f.removeID(g.ID)
	f.grants = append(f.grants, g)
	return nil
}

func (f *fakeBackend) Revoke(_ context.Context, g Grant) error {
	call := "revoke " + g.ID
	f.calls = append(f.calls, call)
	if err := f.failOn[call]; err != nil {
		return err
	}
	f.removeID(g.ID)
	return nil
}

func (f *fakeBackend) removeID(id string) {
	var keep []Grant
	for _, g := range f.grants {
		if g.ID != id {
			keep = append(keep, g)
		}
	}
	f.grants = keep
}

func TestReconcile(t *testing.T) {
	now := t0
	live := now.Add(time.Minute)
	past := now.Add(-time.Second)
	a := Grant{ID: "a", Door: "ssh", Src: src4, Ports: []knock.Port{tcp(22)}, Deadline: live}
	b := Grant{ID: "b", Src: src6, Ports: []knock.Port{tcp(443), udp(53)}, Deadline: live}
	with := func(g Grant, f func(*Grant)) Grant { f(&g); return g }
	kernel := func(g Grant) Grant { // as List returns it: no door, deadline in whole seconds
		g.Door = ""
		g.Deadline = time.Unix(untilSecs(g.Deadline), 0)
		return g
	}
	for _, tc := range []struct {
		name      string
		fb        fakeBackend
		want      []Grant
		calls     []string
		restored  []string
		removed   []string
		recreated bool
		err       string
	}{
		{
			name:     "missing grant is restored",
			want:     []Grant{a},
			calls:    []string{"base", "list", "grant a"},
			restored: []string{"a"},
		},
		{
			name:  "in sync: nothing to do (door and sub-second deadline are not compared)",
			fb:    fakeBackend{grants: []Grant{kernel(with(a, func(g *Grant) { g.Deadline = live.Add(-300 * time.Millisecond) }))}},
			want:  []Grant{with(a, func(g *Grant) { g.Deadline = live.Add(-300 * time.Millisecond) })},
			calls: []string{"base", "list"},
		},
		{
			name:  "mapped address in want matches the unmapped kernel entry",
			fb:    fakeBackend{grants: []Grant{kernel(a)}},
			want:  []Grant{with(a, func(g *Grant) { g.Src = netip.MustParseAddr("::ffff:192.0.2.7") })},
			calls: []string{"base", "list"},
		},
		{
			name:     "kernel deadline differs: granted again",
			fb:       fakeBackend{grants: []Grant{kernel(with(a, func(g *Grant) { g.Deadline = live.Add(-time.Hour) }))}},
			want:     []Grant{a},
			calls:    []string{"base", "list", "grant a"},
			restored: []string{"a"},
		},
		{
			name:     "kernel entry ran out before the (extended) deadline: granted again",
			fb:       fakeBackend{grants: []Grant{kernel(with(a, func(g *Grant) { g.Deadline = past }))}},
			want:     []Grant{a},
			calls:    []string{"base", "list", "grant a"},
			restored: []string{"a"},
		},
		{
			name:     "a port is missing: granted again",
			fb:       fakeBackend{grants: []Grant{kernel(with(b, func(g *Grant) { g.Ports = g.Ports[:1] }))}},
			want:     []Grant{b},
			calls:    []string{"base", "list", "grant b"},
			restored: []string{"b"},
		},
		{
			name:     "same id on two sources (crash mid-move): granted again",
			fb:       fakeBackend{grants: []Grant{kernel(a), kernel(with(a, func(g *Grant) { g.Src = src6 }))}},
			want:     []Grant{a},
			calls:    []string{"base", "list", "grant a"},
			restored: []string{"a"},
		},
		{
			name:    "unwanted grant is removed",
			fb:      fakeBackend{grants: []Grant{kernel(a), kernel(b)}},
			want:    []Grant{b},
			calls:   []string{"base", "list", "revoke a"},
			removed: []string{"a"},
		},
		{
			name:    "wanted but expired is removed",
			fb:      fakeBackend{grants: []Grant{kernel(a)}},
			want:    []Grant{with(a, func(g *Grant) { g.Deadline = now })},
			calls:   []string{"base", "list", "revoke a"},
			removed: []string{"a"},
		},
		{
			name:  "expired and already gone: nothing",
			want:  []Grant{with(a, func(g *Grant) { g.Deadline = past })},
			calls: []string{"base", "list"},
		},
		{
			name:     "duplicate want ids: the later deadline wins",
			fb:       fakeBackend{grants: []Grant{kernel(a)}},
			want:     []Grant{with(a, func(g *Grant) { g.Deadline = now.Add(time.Hour) }), a},
			calls:    []string{"base", "list", "grant a"},
			restored: []string{"a"},
		},
		{
			name:      "flushed firewall: base recreated, grants restored",
			fb:        fakeBackend{recreated: true},
			want:      []Grant{a, b},
			calls:     []string{"base", "list", "grant a", "grant b"},
			restored:  []string{"a", "b"},
			recreated: true,
		},
		{
			name:  "base failure stops before listing",
			fb:    fakeBackend{baseErr: errors.New("netlink: permission denied")},
			want:  []Grant{a},
			calls: []string{"base"},
			err:   "permission denied",
		},
		{
			name:  "list failure stops",
			fb:    fakeBackend{listErr: errors.New("exit status 4")},
			want:  []Grant{a},
			calls: []string{"base", "list"},
			err:   "exit status 4",
		},
		{
			name:     "invalid want and failing calls do not stop the others",
			fb:       fakeBackend{grants: []Grant{kernel(with(a, func(g *Grant) { g.ID = "x" })), kernel(with(a, func(g *Grant) { g.ID = "y" }))}, failOn: map[string]error{"revoke x": errors.New("boom x"), "grant b": errors.New("boom b")}},
			want:     []Grant{with(a, func(g *Grant) { g.ID = "bad id" }), b, a},
			calls:    []string{"base", "list", "revoke x", "revoke y", "grant b", "grant a"},
			restored: []string{"a"},
			removed:  []string{"y"},
			err:      "boom x",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := tc.fb
			rep, err := Reconcile(context.Background(), &fb, tc.want, now)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if !reflect.DeepEqual(fb.calls, tc.calls) {
				t.Errorf("calls %q, want %q", fb.calls, tc.calls)
			}
			if got := ids(rep.Restored); !reflect.DeepEqual(got, tc.restored) {
				t.Errorf("restored %v, want %v", got, tc.restored)
			}
			if got := ids(rep.Removed); !reflect.DeepEqual(got, tc.removed) {
				t.Errorf("removed %v, want %v", got, tc.removed)
			}
			if rep.Recreated != tc.recreated {
				t.Errorf("recreated %v", rep.Recreated)
			}
			if rep.Changed() != (len(tc.restored)+len(tc.removed) > 0 || tc.recreated) {
				t.Errorf("Changed() = %v", rep.Changed())
			}
		})
	}
}

func TestReconcileBackendWithoutBase(t *testing.T) {
	fb := &fakeBackend{}
	var b Backend = struct{ Backend }{fb} // hides EnsureBase
	if _, ok := b.(BaseKeeper); ok {
		t.Fatal("wrapper still a BaseKeeper")
	}
	rep, err := Reconcile(context.Background(), b, []Grant{{ID: "a", Src: src4, Ports: []knock.Port{tcp(22)}, Deadline: t0.Add(time.Minute)}}, t0)
	if err != nil || !reflect.DeepEqual(fb.calls, []string{"list", "grant a"}) || rep.Recreated {
		t.Fatalf("calls %q rep %+v err %v", fb.calls, rep, err)
	}
}

func ids(gs []Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}
