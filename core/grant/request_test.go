package grant

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

var (
	tcp22  = knock.Port{Num: 22, Proto: knock.TCP}
	tcp443 = knock.Port{Num: 443, Proto: knock.TCP}
)

// sshRequest is an SSH-signed knock's request, packet n of its sender.
func sshRequest(n int, ports ...knock.Port) Request {
	d := sha256.Sum256([]byte(fmt.Sprint("packet ", n)))
	return Request{Name: "ssh", Source: src4, Ports: ports, Timeout: 30 * time.Second,
		Auth:   Auth{Method: "ssh", User: "alice@laptop", Key: "SHA256:alice"},
		Replay: journal.Replay{Digest: d, Expires: time.Now().Add(2 * time.Minute)}}
}

func digestPrefix(n int) string {
	d := sha256.Sum256([]byte(fmt.Sprint("packet ", n)))
	return fmt.Sprintf("%x", d[:2])
}

// An SPA request is a native grant whose journal record carries who asked
// and the packet's replay digest; the view and the log lines say who.
func TestSPARequestIsJournaledWithItsIdentity(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		if out := r.m.Grant(sshRequest(1, tcp443, tcp22, tcp22), time.Now()); out != Granted {
			t.Fatalf("outcome %v", out)
		}
		r.settle()
		gs := r.m.List()
		if len(gs) != 1 || gs[0].Auth != "ssh" || gs[0].User != "alice@laptop" || gs[0].Key != "SHA256:alice" || gs[0].Ports != "22:tcp,443:tcp" {
			t.Fatalf("List() = %+v", gs)
		}
		r.advance(30 * time.Second)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="" open=[22:tcp 443:tcp] deadline=+30s pending=false`,
			`  by ssh "alice@laptop" SHA256:alice replay `+digestPrefix(1)+` until +2m0s`,
			"fw grant 192.0.2.7 [22:tcp 443:tcp] until +30s",
			"fw revoke 192.0.2.7",
			"journal revoked at +30s",
		)
		log := r.log.String()
		for _, want := range []string{"access granted", "event=grant", "auth=ssh", "user=alice@laptop", "key=SHA256:alice"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})
}

// A second packet asking the same ports extends the grant, and its
// digest is journaled before the extension takes effect; one asking
// other ports gets a grant of its own: the old ports are never kept
// under the new packet's deadline.
func TestSPARequestsExtendOrAddBySamePorts(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Grant(sshRequest(1, tcp22), time.Now())
		r.advance(10 * time.Second)
		if out := r.m.Grant(sshRequest(2, tcp22), time.Now()); out != Extended {
			t.Fatalf("same ports: %v, want extended", out)
		}
		r.settle()
		if out := r.m.Grant(sshRequest(3, tcp443), time.Now()); out != Granted {
			t.Fatalf("other ports: %v, want granted", out)
		}
		r.settle()
		gs := r.m.List()
		if len(gs) != 2 || gs[0].Ports != "22:tcp" || gs[1].Ports != "443:tcp" {
			t.Fatalf("List() = %+v, want the 22 grant and the 443 grant", gs)
		}
		if !gs[0].Deadline.Equal(gs[1].Deadline) {
			t.Errorf("22's deadline %v, want the extension's %v", gs[0].Deadline, gs[1].Deadline)
		}
		r.advance(40 * time.Second)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="" open=[22:tcp] deadline=+30s pending=false`,
			`  by ssh "alice@laptop" SHA256:alice replay `+digestPrefix(1)+` until +2m0s`,
			"fw grant 192.0.2.7 [22:tcp] until +30s",
			"journal replay "+digestPrefix(2)+" until +2m10s",
			"fw grant 192.0.2.7 [22:tcp] until +40s",
			"journal extend +40s",
			`journal grant ssh 192.0.2.7 stop="" open=[443:tcp] deadline=+40s pending=false`,
			`  by ssh "alice@laptop" SHA256:alice replay `+digestPrefix(3)+` until +2m10s`,
			"fw grant 192.0.2.7 [443:tcp] until +40s",
			"fw revoke 192.0.2.7",
			"journal revoked at +40s",
			"fw revoke 192.0.2.7",
			"journal revoked at +40s",
		)
	})
}

// An extension whose digest the journal refuses does not happen.
func TestSPAExtensionNeedsItsDigestJournaled(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Grant(sshRequest(1, tcp22), time.Now())
		r.advance(10 * time.Second)
		r.j.mu.Lock()
		r.j.failAll = true
		r.j.mu.Unlock()
		r.m.Grant(sshRequest(2, tcp22), time.Now())
		r.settle()
		gs := r.m.List()
		if len(gs) != 1 || !gs[0].Deadline.Equal(r.tr.t0.Add(30*time.Second)) {
			t.Fatalf("List() = %+v, want the first deadline (+30s) kept", gs)
		}
		if !strings.Contains(r.log.String(), "replay digest not journaled") {
			t.Errorf("log:\n%s", r.log.String())
		}
	})
}

// A request the rate limit refuses still journals its digest: the packet
// stays a replay after a restart.
func TestRefusedSPARequestKeepsItsDigest(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		now := time.Now()
		for i := 0; i < NativeBurst; i++ {
			req := sshRequest(1000+i, tcp22)
			req.Source = src4.Next()
			req.Auth.Key = fmt.Sprint("SHA256:k", i) // a grant each
			if out := r.m.Grant(req, now); out != Granted {
				t.Fatalf("request %d: %v", i, out)
			}
		}
		if out := r.m.Grant(sshRequest(1, tcp22), now); out != RateLimited {
			t.Fatalf("outcome %v, want rate limited", out)
		}
		r.settle()
		if n := r.tr.count("journal replay " + digestPrefix(1)); n != 1 {
			t.Errorf("the refused packet's digest journaled %d times, want once", n)
		}
	})
}

// RevokeIf revokes the grants of a removed key, and only those.
func TestRevokeIfByKey(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		a := sshRequest(1, tcp22)
		b := sshRequest(2, tcp22)
		b.Auth = Auth{Method: "ssh", User: "bob", Key: "SHA256:bob"}
		r.m.Grant(a, time.Now())
		r.m.Grant(b, time.Now())
		r.m.Open(nativeDoor(), src4, time.Now())
		r.settle()
		if len(r.m.List()) != 3 {
			t.Fatalf("List() = %+v, want 3 grants (alice's and bob's are not one)", r.m.List())
		}
		ids := r.m.RevokeIf(func(g Grant) bool { return g.Auth == "ssh" && g.Key == "SHA256:alice" }, "key removed")
		r.settle()
		var left []string
		for _, g := range r.m.List() {
			left = append(left, g.Door+"/"+g.User)
		}
		sort.Strings(left) // same deadline and start: List orders them by id
		if len(ids) != 1 || !reflect.DeepEqual(left, []string{"ssh/bob", "web/"}) {
			t.Errorf("revoked %v, left %v", ids, left)
		}
		if !strings.Contains(r.log.String(), "reason=\"key removed\"") {
			t.Errorf("log:\n%s", r.log.String())
		}
	})
}

// A resumed SPA grant keeps its identity: the same ports extend it.
func TestResumedSPAGrantIsExtended(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Grant(sshRequest(1, tcp22), time.Now())
		r.settle()
		rec := journal.Record{ID: r.m.List()[0].ID, Door: "ssh", Source: src4, Open: []knock.Port{tcp22}, Backend: "fake",
			Start: time.Now(), Deadline: time.Now().Add(30 * time.Second), Timeout: 30 * time.Second,
			Auth: "ssh", User: "alice@laptop", Key: "SHA256:alice"}
		r.restart()
		r.m.Resume([]journal.Record{rec}, nil)
		r.settle()
		r.advance(5 * time.Second)
		if out := r.m.Grant(sshRequest(2, tcp22), time.Now()); out != Extended {
			t.Fatalf("after a restart the same ports: %v, want extended", out)
		}
	})
}
