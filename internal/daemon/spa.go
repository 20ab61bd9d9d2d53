package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/loglimit"
	"github.com/sesame-knock/sesame/core/spa/replay"
	"github.com/sesame-knock/sesame/core/spa/verify"
	"github.com/sesame-knock/sesame/core/sshknock"
	"github.com/sesame-knock/sesame/supervisor"
)

// Single Packet Authorization in sesamed: fwknop packets (SPA_Access)
// and SSH-signed knocks (SPA_Authorized_Keys) on SPA_Port.
//
//	capture goroutine --datagram--> spaService.datagram: sshknock.IsPacket?
//	    --copy--> fwknop queue / SSH queue (dgramQueue: fixed slots, lanes by source)
//	"spa fwknop" goroutine: verify.Verifier (HMAC first) -> refusal or grant.Request
//	"spa ssh" goroutine:    sshknock.Verifier (fingerprint, budgets, signature)
//	    -> grant.Manager.Grant (digest journaled with the grant) -> firewall
//
// Neither the captures nor the matcher verify anything: a capture copies
// the payload and goes back to reading, and each kind of packet has its
// own goroutine, so SSH signature checks (budgeted) never delay fwknop
// packets nor knocks. Until a packet's HMAC or its key's fingerprint
// checks out, nothing is allocated: refusals are counted and logged
// through a loglimit.Limiter (one line per reason per second, a summary
// of the rest).

// spaGrants is what the SPA path asks of the grant manager.
type spaGrants interface {
	Grant(r grant.Request, now time.Time) grant.Outcome
	RevokeIf(match func(grant.Grant) bool, why string) []string
}

// Which verifier refused a packet (the first index of spaService.refused).
const (
	authFwknop = 0
	authSSH    = 1
	numAuths   = 2
	// reasonOff is the refusal of a packet of a kind that is not
	// configured (an SSH-signed knock without SPA_Authorized_Keys).
	reasonOff  = 31
	numReasons = 32
)

var authNames = [numAuths]string{event.AuthFwknop, event.AuthSSH}

// spaState is what one config's SPA files set up, swapped whole by a
// reload: the files, the fwknop verifier (used by the fwknop goroutine
// only: verify.Verifier is not safe for concurrent use) and the SSH one.
type spaState struct {
	files *spaFiles
	fw    *verify.Verifier   // nil without SPA_Access
	ssh   *sshknock.Verifier // nil without SPA_Authorized_Keys
}

// spaService owns SPA: the replay cache shared by both kinds of packet
// (kept for the daemon's life, refilled from the journal at start), the
// queues, the verifier goroutines and the refusal counts.
type spaService struct {
	log      hclog.Logger
	now      func() time.Time
	skipIPv6 bool
	cache    *replay.Cache
	fwq      *dgramQueue
	sshq     *dgramQueue

	// state is nil while SPA is off. Written by start and commit (one
	// at a time: the daemon's start, then its reloads), read by every
	// goroutine.
	state atomic.Pointer[spaState]
	// local holds the host's addresses: an SSH-signed knock for another
	// address is refused. Written by setLocal, read by the SSH goroutine.
	local atomic.Pointer[map[netip.Addr]struct{}]

	// Set once by start, before any packet.
	grants spaGrants

	refused  [numAuths][numReasons]atomic.Uint64
	accepted [numAuths]atomic.Uint64
	// lines limits refusal lines per (auth, reason); lineKeys are its
	// keys, made once so that a refusal allocates no key.
	lines    *loglimit.Limiter
	lineKeys [numAuths][numReasons]string
	// cacheFull counts SSH knocks refused because the replay cache was
	// full (they are refused as replays: fail closed).
	cacheFull atomic.Uint64

	mu      sync.Mutex // guards pending
	pending *spaFiles  // loaded at start, before the firewall; committed by start
}

func newSPA(log hclog.Logger, now func() time.Time, skipIPv6 bool) *spaService {
	s := &spaService{log: log, now: now, skipIPv6: skipIPv6, cache: replay.New(),
		fwq: newDgramQueue(), sshq: newDgramQueue()}
	empty := map[netip.Addr]struct{}{}
	s.local.Store(&empty)
	for a := range numAuths {
		for r := range numReasons {
			s.lineKeys[a][r] = authNames[a] + "\x00" + s.reasonName(a, r)
		}
	}
	s.lines = loglimit.New(loglimit.Options{Rate: 1, Burst: 10, Every: 10 * time.Second, Report: s.reportHeld})
	return s
}

// reasonName is the refusal reason r of verifier a as logs show it.
func (s *spaService) reasonName(a, r int) string {
	if r == reasonOff {
		return "not configured"
	}
	if a == authSSH {
		return sshknock.Reason(r).String()
	}
	return verify.Reason(r).String()
}

// reportHeld summarises the refusal lines held back.
func (s *spaService) reportHeld(key string, n uint64, every time.Duration) {
	auth, reason, _ := strings.Cut(key, "\x00")
	s.log.Warn(fmt.Sprintf("%d more %s SPA packets refused (%s) in the last %v (not logged one by one)", n, auth, reason, every),
		event.Event{Kind: event.Refused, Auth: auth}.Args(event.KeyReason, reason, event.KeySuppressed, n)...)
}

// loadService reads the first config's SPA files, before the firewall
// is set up (it guards the ports they open). A file with an error stops
// the start, naming its file and line.
func (s *spaService) loadService(cfg func() *config.Config) hook {
	return hook{name: "spa files", start: func(context.Context) error {
		f, err := loadSPA(cfg())
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.pending = f
		s.mu.Unlock()
		return nil
	}}
}

// pendingFiles is what loadService read (nil when SPA is off).
func (s *spaService) pendingFiles() *spaFiles {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// files is the SPA files in force (nil when SPA is off).
func (s *spaService) files() *spaFiles {
	if st := s.state.Load(); st != nil {
		return st.files
	}
	return nil
}

// journalStore gives the journal's replay digests to the replay cache.
type journalStore struct{ j *journal.Journal }

func (js journalStore) Replays() ([]replay.Entry, error) {
	rs := js.j.Replays()
	out := make([]replay.Entry, len(rs))
	for i, r := range rs {
		out[i] = replay.Entry{Digest: replay.Digest(r.Digest), Expires: r.Expires}
	}
	return out, nil
}

// runService starts SPA once the journal, the grants and the supervisor
// run, before the captures: it refills the replay cache from the journal
// (so a packet accepted before a restart or reboot stays a replay),
// sets up the verifiers for the files loadService read, revokes the
// resumed grants of SSH keys no longer listed, and has the supervisor
// run the two verifier goroutines.
func (d *daemon) spaRunService() hook {
	s := d.spa
	return hook{name: "spa", start: func(context.Context) error {
		s.grants = d.grants
		now := s.now()
		n, err := s.cache.Load(journalStore{d.journal}, now)
		if err != nil {
			return fmt.Errorf("spa: %w", err)
		}
		f := s.pendingFiles()
		if n > 0 || f != nil {
			s.log.Info(fmt.Sprintf("replay cache: %d digests of accepted SPA packets restored from the journal", n), "restored", n)
		}
		if err := s.commit(f, d.fw.backend()); err != nil {
			return err
		}
		for _, c := range []struct {
			name string
			q    *dgramQueue
			h    func(*dgram, time.Time)
		}{{"spa fwknop", s.fwq, s.handleFwknop}, {"spa ssh", s.sshq, s.handleSSH}} {
			d.sup.Add(c.name, 5*time.Second, supervisor.ServiceFunc(func(ctx context.Context, beat *supervisor.Beater) error {
				return s.drain(ctx, c.q, beat, c.h)
			}))
		}
		d.caps.setDatagrams(s.port(), s.datagram)
		return nil
	}, stop: func(context.Context) error {
		s.lines.Close()
		return nil
	}}
}

// port is SPA_Port in force, 0 while SPA is off.
func (s *spaService) port() uint16 {
	if f := s.files(); f != nil {
		return f.port
	}
	return 0
}

// commit makes f the SPA files in force (nil: SPA off): new verifiers
// for them, the SSH verifier kept (with its budgets) when only the keys
// changed, and the grants of SSH keys f no longer lists revoked. It
// fails only when a verifier cannot be made, before anything changed.
func (s *spaService) commit(f *spaFiles, fw interface{ Name() string }) error {
	old := s.state.Load()
	if f == nil {
		s.state.Store(nil)
		if old != nil {
			s.log.Info("SPA off")
		}
		s.revokeRemovedKeys(nil)
		return nil
	}
	st := &spaState{files: f}
	if f.access != nil {
		v, err := verify.New(f.access.Stanzas, s.cache, verify.Options{MaxAge: f.maxAge})
		if err != nil {
			return fmt.Errorf("spa: %w", err)
		}
		st.fw = v
		for _, w := range f.access.Warnings {
			s.log.Warn("SPA_Access: " + w)
		}
	}
	if f.keys != nil {
		if old != nil && old.ssh != nil && old.files.maxAge == f.maxAge {
			old.ssh.SetKeys(f.keys)
			st.ssh = old.ssh
		} else {
			v, err := sshknock.NewVerifier(f.keys, sshknock.Options{IsLocal: s.isLocal,
				Replay: sshReplay{s}, MaxAge: f.maxAge})
			if err != nil {
				return fmt.Errorf("spa: %w", err)
			}
			st.ssh = v
		}
	}
	if u := f.unguarded(); len(u) > 0 && fw != nil && fw.Name() == "nftables" {
		s.log.Warn("SPA_Access: stanzas without OPEN_PORTS may ask for any port, but with Firewall = nftables Sesame guards (and so can grant) only the ports some OPEN_PORTS, open= or Open lists: " + strings.Join(u, ", "))
	}
	s.state.Store(st)
	stanzas, keys := 0, 0
	if f.access != nil {
		stanzas = len(f.access.Stanzas)
	}
	if f.keys != nil {
		keys = len(f.keys.List)
	}
	s.log.Info(fmt.Sprintf("SPA on %d/udp: %d fwknop stanzas, %d SSH keys", f.port, stanzas, keys),
		"port", f.port, "stanzas", stanzas, "keys", keys, "max_age", f.maxAge.String())
	s.revokeRemovedKeys(f.keys)
	return nil
}

// revokeRemovedKeys revokes the grants of SSH keys that keys (nil: none)
// does not list: removing a key's line and reloading revokes its grants,
// also those resumed from the journal at a start.
func (s *spaService) revokeRemovedKeys(keys *sshknock.Keys) {
	if s.grants == nil {
		return
	}
	listed := map[string]bool{}
	if keys != nil {
		for _, k := range keys.List {
			listed[k.Fingerprint.String()] = true
		}
	}
	type gone struct {
		who string
		n   int
	}
	removed := map[string]*gone{} // by fingerprint
	s.grants.RevokeIf(func(g grant.Grant) bool {
		if g.Auth != event.AuthSSH || listed[g.Key] {
			return false
		}
		if removed[g.Key] == nil {
			removed[g.Key] = &gone{who: g.User}
		}
		removed[g.Key].n++
		return true
	}, "key removed")
	for fp, k := range removed {
		s.log.Info(fmt.Sprintf("SSH key %s (%q) is no longer in SPA_Authorized_Keys: revoking its %d grants", fp, k.who, k.n),
			event.Event{Kind: event.Revoke, Auth: event.AuthSSH, User: k.who, Key: fp}.Args("grants", k.n)...)
	}
}

// sshReplay is the replay cache as sshknock asks for it: SSH knocks'
// digests share the cache (and the journal) with fwknop packets'.
type sshReplay struct{ s *spaService }

func (r sshReplay) Seen(d [32]byte, now time.Time) bool { return r.s.cache.Has(replay.Digest(d), now) }

func (r sshReplay) Add(d [32]byte, until time.Time) bool {
	ok, err := r.s.cache.AddDigest(replay.Digest(d), until, r.s.now())
	if err != nil {
		r.s.cacheFull.Add(1)
	}
	return ok && err == nil
}

// setLocal records the host's addresses (SSH-signed knocks must name one).
func (s *spaService) setLocal(addrs ...[]netip.Addr) {
	m := map[netip.Addr]struct{}{}
	for _, as := range addrs {
		for _, a := range as {
			m[a.Unmap().WithZone("")] = struct{}{}
		}
	}
	s.local.Store(&m)
}

func (s *spaService) isLocal(a netip.Addr) bool {
	_, ok := (*s.local.Load())[a.Unmap()]
	return ok
}

// datagram is the captures' Deliver.Datagram: it queues a copy of an SPA
// datagram for the verifier of its kind, on the capture's goroutine,
// without allocating.
func (s *spaService) datagram(p knock.Packet, payload []byte) {
	if s.skipIPv6 && !p.Src.Is4() && !p.Src.Is4In6() {
		return
	}
	q := s.fwq
	if sshknock.IsPacket(payload) {
		q = s.sshq
	}
	q.put(p.Src.Unmap(), p.Dst.Unmap(), payload)
}

// drain is a verifier goroutine: it hands q's datagrams to handle until
// ctx ends, beating meanwhile. A datagram that a previous run of it died
// on (a panic the supervisor caught) is dropped, not retried.
func (s *spaService) drain(ctx context.Context, q *dgramQueue, beat *supervisor.Beater, handle func(*dgram, time.Time)) error {
	q.done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	beat.Beat()
	last := time.Now()
	for {
		d := q.next()
		if d == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-q.wake:
			case <-tick.C:
				beat.Beat()
			}
			continue
		}
		handle(d, s.now())
		q.done()
		if t := time.Now(); t.Sub(last) >= 100*time.Millisecond {
			beat.Beat()
			last = t
		}
	}
}

// handleFwknop decides on one fwknop packet.
func (s *spaService) handleFwknop(d *dgram, now time.Time) {
	st := s.state.Load()
	if st == nil || st.fw == nil {
		s.refuse(authFwknop, reasonOff, d.src, now, nil)
		return
	}
	vd := st.fw.Verify(d.payload(), d.src, d.dst, now)
	if vd.Reason != verify.Accepted {
		s.refuse(authFwknop, int(vd.Reason), d.src, now, func() []any {
			ev := event.Event{Kind: event.Refused, Source: d.src, Auth: event.AuthFwknop}
			var extra []any
			if vd.Stanza != nil {
				ev.Door = vd.Stanza.Name()
				extra = append(extra, "stanza_at", vd.Stanza.Where())
			}
			if vd.Message != nil {
				ev.User = vd.Message.User
			}
			extra = append(extra, event.KeyReason, vd.Reason.String())
			if vd.Detail != "" {
				extra = append(extra, "detail", vd.Detail)
			}
			return ev.Args(extra...)
		})
		return
	}
	r := vd.Request
	s.accept(authFwknop, d.src, grant.Request{Name: r.Stanza.Name(), Source: r.Allow, Ports: r.Ports, Timeout: r.Timeout,
		Auth:   grant.Auth{Method: event.AuthFwknop, User: r.User},
		Replay: journal.Replay{Digest: r.Replay.Digest, Expires: r.Replay.Expires}}, now)
}

// sshGrantName is the Name of SSH-signed knocks' grants (their DOOR in
// sesame grants); the key's comment is the USER.
const sshGrantName = "ssh"

// handleSSH decides on one SSH-signed knock.
func (s *spaService) handleSSH(d *dgram, now time.Time) {
	st := s.state.Load()
	if st == nil || st.ssh == nil {
		s.refuse(authSSH, reasonOff, d.src, now, nil)
		return
	}
	vd := st.ssh.Verify(d.payload(), d.src, now)
	if vd.Reason != sshknock.Accepted {
		s.refuse(authSSH, int(vd.Reason), d.src, now, func() []any {
			ev := event.Event{Kind: event.Refused, Source: d.src, Auth: event.AuthSSH}
			if vd.Key != nil {
				ev.Door, ev.User, ev.Key = sshGrantName, vd.Key.Comment, vd.Key.Fingerprint.String()
			}
			extra := []any{event.KeyReason, vd.Reason.String()}
			if vd.Detail != "" {
				extra = append(extra, "detail", vd.Detail)
			}
			if vd.Server.IsValid() && vd.Reason == sshknock.WrongServer {
				extra = append(extra, "server", vd.Server.String())
			}
			return ev.Args(extra...)
		})
		return
	}
	r := vd.Request
	s.accept(authSSH, d.src, grant.Request{Name: sshGrantName, Source: r.Allow, Ports: r.Ports, Timeout: r.Timeout,
		Auth:   grant.Auth{Method: event.AuthSSH, User: r.Comment, Key: r.Fingerprint.String()},
		Replay: journal.Replay{Digest: r.Digest, Expires: r.ReplayUntil}}, now)
}

// refuse counts a refusal and logs it unless its (auth, reason) logged
// enough lately; args builds the line's fields only when it is logged.
func (s *spaService) refuse(auth, reason int, src netip.Addr, now time.Time, args func() []any) {
	s.refused[auth][reason].Add(1)
	if !s.lines.Allow(s.lineKeys[auth][reason], now) {
		return
	}
	var fields []any
	if args != nil {
		fields = args()
	} else {
		fields = event.Event{Kind: event.Refused, Source: src, Auth: authNames[auth]}.Args(event.KeyReason, s.reasonName(auth, reason))
	}
	s.log.Warn(fmt.Sprintf("%s: %s SPA packet refused: %s", src, authNames[auth], s.reasonName(auth, reason)), fields...)
}

// accept hands an accepted packet's request to the grant manager and
// logs it as knockd logs an open.
func (s *spaService) accept(auth int, src netip.Addr, r grant.Request, now time.Time) {
	s.accepted[auth].Add(1)
	out := s.grants.Grant(r, now)
	ev := event.Event{Kind: event.Open, Door: r.Name, Source: r.Source, Auth: r.Auth.Method, User: r.Auth.User, Key: r.Auth.Key}
	extra := []any{"outcome", out.String(), "ports", knock.FormatSequence(r.Ports), "timeout", r.Timeout.String()}
	if src != r.Source {
		extra = append(extra, "from", src.String())
	}
	s.log.Info(fmt.Sprintf("%s: %s: OPEN SESAME", r.Source, r.Name), ev.Args(extra...)...)
}

// spaStats are the SPA path's counters.
type spaStats struct {
	Accepted [numAuths]uint64
	// Refused counts refusals by verifier and reason (index the reason's
	// value; reasonOff for a kind not configured).
	Refused   [numAuths][numReasons]uint64
	Dropped   uint64 // datagrams a full queue lane refused
	Oversize  uint64 // datagrams longer than any SPA packet
	CacheFull uint64
}

func (s *spaService) stats() spaStats {
	var st spaStats
	for a := range numAuths {
		st.Accepted[a] = s.accepted[a].Load()
		for r := range numReasons {
			st.Refused[a][r] = s.refused[a][r].Load()
		}
	}
	st.Dropped = s.fwq.dropped.Load() + s.sshq.dropped.Load()
	st.Oversize = s.fwq.oversize.Load() + s.sshq.oversize.Load()
	st.CacheFull = s.cacheFull.Load()
	return st
}
