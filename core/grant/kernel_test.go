package grant

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/knock"
)

// expiringFirewall is the fake firewall as a backend whose grants lapse
// in the kernel at their deadline (nftables, iptables --datestop).
type expiringFirewall struct{ *fakeFirewall }

func (expiringFirewall) ExpiresInKernel() bool { return true }

func kernelExpiry(o *Options) { o.Firewall = expiringFirewall{o.Firewall.(*fakeFirewall)} }

// expectConcurrent is rig.expect with the first two lines (the journal
// write begun and the native grant, which run concurrently) in either
// order.
func (r *rig) expectConcurrent(want ...string) {
	r.t.Helper()
	got := r.tr.all()
	if len(got) >= 2 && len(want) >= 2 && got[0] == want[1] && got[1] == want[0] {
		want = append([]string{want[1], want[0]}, want[2:]...)
	}
	r.expect(want...)
}

// holdGrants holds r's journal Grant writes until the returned release
// is called, and at the latest when the test's function returns (also on
// t.Fatal), so that the bubble can end.
func holdGrants(t *testing.T, r *rig) (release func()) {
	hold := make(chan struct{})
	r.j.mu.Lock()
	r.j.holdGrant = hold
	r.j.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	return release
}

// With a kernel that expires grants, a native grant is applied while its
// journal record is written: before it is durable, the kernel holds the
// grant's own deadline (the knock plus the door's timeout), so a crash at
// this point leaves nothing open past it; a repeat knock meanwhile moves
// nothing in the kernel until the record is durable.
func TestKernelExpiringGrantAppliedWhileJournaling(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		release := holdGrants(t, r)
		defer release()
		if out := r.m.Open(nativeDoor(), src4, time.Now()); out != Granted {
			t.Fatalf("Open = %v", out)
		}
		r.settle()
		r.expectConcurrent(
			"journal grant begun",
			"fw grant 192.0.2.7 [22:tcp] until +30s", // the deadline, not durable yet
		)
		if got := r.state(r.m.List()[0].ID); got != "starting" {
			t.Errorf("state %q before the record is durable, want starting", got)
		}
		r.advance(10 * time.Second)
		if out := r.m.Open(nativeDoor(), src4, time.Now()); out != Extended {
			t.Fatalf("repeat Open = %v", out)
		}
		r.settle()
		if n := r.tr.count("fw grant"); n != 1 {
			t.Fatalf("the kernel's deadline moved before the record was durable: %q", r.tr.all())
		}
		release()
		r.settle()
		r.advance(40 * time.Second)
		r.expectConcurrent(
			"journal grant begun",
			"fw grant 192.0.2.7 [22:tcp] until +30s",
			`journal grant web 192.0.2.7 stop="" open=[22:tcp] deadline=+30s pending=false`,
			// The extension asked while it was starting, once durable.
			"fw grant 192.0.2.7 [22:tcp] until +40s",
			"journal extend +40s",
			"fw revoke 192.0.2.7",
			"journal revoked at +40s",
		)
	}, kernelExpiry)
}

// A journal write that fails after the native grant was applied refuses
// the grant and revokes it at once; the grant is no longer wanted, so
// Reconcile would remove it too should that revoke fail.
func TestKernelExpiringGrantRevokedWhenJournalFails(t *testing.T) {
	for _, revokeFails := range []bool{false, true} {
		name := map[bool]string{false: "revoked", true: "revoke fails"}[revokeFails]
		t.Run(name, func(t *testing.T) {
			bubble(t, func(t *testing.T, r *rig) {
				release := holdGrants(t, r)
				defer release()
				if revokeFails {
					r.fw.failures = 1
				}
				r.m.Open(nativeDoor(), src4, time.Now())
				r.settle()
				r.expectConcurrent("journal grant begun", "fw grant 192.0.2.7 [22:tcp] until +30s")
				r.j.mu.Lock()
				r.j.failAll = true
				r.j.mu.Unlock()
				release()
				r.settle()
				revoke := "fw revoke 192.0.2.7"
				if revokeFails {
					revoke += " failed"
				}
				r.expectConcurrent("journal grant begun", "fw grant 192.0.2.7 [22:tcp] until +30s", revoke)
				if gs, ng := r.m.List(), r.m.Native(); len(gs) != 0 || len(ng) != 0 {
					t.Errorf("a refused grant is kept: List %+v, Native %+v", gs, ng)
				}
				log := r.log.String()
				if !strings.Contains(log, "grant refused") || strings.Contains(log, "access granted") {
					t.Errorf("log:\n%s", log)
				}
				if revokeFails && !strings.Contains(log, "the kernel ends it at") {
					t.Errorf("a failed revoke does not say when the kernel ends the grant:\n%s", log)
				}
				r.advance(time.Minute)
				if n := len(r.tr.all()); n != 3 {
					t.Errorf("more happened after the refusal: %q", r.tr.all())
				}
			}, kernelExpiry)
		})
	}
}

// Start commands stay journal-first even when the door also opens ports
// in a kernel that expires them, and so do SPA grants (their replay
// digest is durable before the packet has any effect).
func TestCommandsAndSPAStayJournalFirst(t *testing.T) {
	both := &config.Door{Name: "both", CmdTimeout: 10 * time.Second, OpenTimeout: 30 * time.Second,
		Open:  []knock.Port{tcp22},
		Start: config.Command{Text: "open %IP%", Set: true}, Stop: config.Command{Text: "close %IP%", Set: true}}
	for _, tc := range []struct {
		name  string
		grant func(m *Manager) Outcome
	}{
		{"start command", func(m *Manager) Outcome { return m.Open(both, src4, time.Now()) }},
		{"SPA", func(m *Manager) Outcome { return m.Grant(sshRequest(1, tcp22), time.Now()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, r *rig) {
				release := holdGrants(t, r)
				defer release()
				if out := tc.grant(r.m); out != Granted {
					t.Fatalf("outcome %v", out)
				}
				r.settle()
				r.expect("journal grant begun")
				release()
				r.settle()
				tr := r.tr.all()
				if len(tr) < 3 || !strings.HasPrefix(tr[1], "journal grant ") {
					t.Fatalf("applied before the record was durable: %q", tr)
				}
			}, kernelExpiry)
		})
	}
}
