// Package verify is the SPA server's decision on one packet, in fwknopd's
// order: the packet's form, a stanza whose SOURCE matches, a replay seen
// before, then per stanza the HMAC (without allocating), expiry,
// decryption, digest, fields, the timestamp within the maximum age, the
// replay cache, and the stanza's rules. It returns a Verdict (a grant
// Request, or a typed refusal) and does no I/O: the daemon logs, journals
// the replay entry with the grant, and applies it.
package verify

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/spa/replay"
)

// DefaultMaxAge is fwknopd's MAX_SPA_PACKET_AGE (Sesame's SPA_Max_Age).
const DefaultMaxAge = 120 * time.Second

// Request is an accepted packet: what the grant path opens, and the
// replay entry to journal with the grant before it is applied.
type Request struct {
	Allow   netip.Addr   // the address to open for: the packet's (-a), or its source (-s)
	Source  netip.Addr   // the packet's source address
	Ports   []knock.Port // as requested, duplicates removed, all tcp or udp
	Timeout time.Duration
	User    string // the packet's user name, as claimed by the client
	Stanza  *access.Stanza
	Sent    time.Time // the packet's timestamp
	Replay  replay.Entry
}

// Verdict is the outcome for one packet. Stanza and Message are set once
// a stanza matched and once a packet decrypted; Detail says more about a
// refusal when there is more to say.
type Verdict struct {
	Reason  Reason
	Stanza  *access.Stanza
	Message *spa.Message
	Detail  string
	Request *Request // when Reason is Accepted
}

// Fields are the verdict as log key/values (journald SESAME_AUTH,
// SESAME_REASON, SESAME_STANZA, SESAME_STANZA_AT, SESAME_USER,
// SESAME_DETAIL, for those that are set).
func (v Verdict) Fields() []any {
	f := []any{"auth", "fwknop", "reason", v.Reason.String()}
	if v.Stanza != nil {
		f = append(f, "stanza", v.Stanza.Name(), "stanza_at", v.Stanza.Where())
	}
	if v.Message != nil {
		f = append(f, "user", v.Message.User)
	}
	if v.Detail != "" {
		f = append(f, "detail", v.Detail)
	}
	return f
}

// Options configure a Verifier.
type Options struct {
	// MaxAge is how far a packet's timestamp may be from now, either way
	// (SPA_Max_Age; DefaultMaxAge when zero). Whole seconds, as fwknopd.
	MaxAge time.Duration
}

// Verifier decides on packets for a set of stanzas. It is not safe for
// concurrent use: give each capture goroutine its own (New is cheap);
// they may share the replay cache, which is.
type Verifier struct {
	stanzas []*access.Stanza
	cache   *replay.Cache
	maxAge  int64 // seconds

	// macs holds one MAC per distinct (HMAC type, key), so stanzas that
	// share a key cost one HMAC per packet; macOf maps a stanza to it.
	macs  []*spa.MAC
	macOf []int
	// seen is per-packet scratch: 0 not checked, 1 valid, -1 invalid.
	seen []int8
}

// New returns a Verifier for stanzas (in access.conf order) sharing
// cache.
func New(stanzas []*access.Stanza, cache *replay.Cache, opts Options) (*Verifier, error) {
	if cache == nil {
		return nil, errors.New("verify.New: no replay cache")
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	v := &Verifier{stanzas: stanzas, cache: cache, maxAge: int64(opts.MaxAge / time.Second)}
	type macKey struct {
		t spa.HashType
		k string
	}
	index := map[macKey]int{}
	for _, st := range stanzas {
		k := macKey{st.Keys.HMAC, string(st.Keys.HMACKey)}
		i, ok := index[k]
		if !ok {
			m, err := spa.NewMAC(st.Keys.HMAC, st.Keys.HMACKey)
			if err != nil {
				return nil, fmt.Errorf("verify.New: stanza %s: %w", st.Where(), err)
			}
			i = len(v.macs)
			index[k] = i
			v.macs = append(v.macs, m)
		}
		v.macOf = append(v.macOf, i)
	}
	v.seen = make([]int8, len(v.macs))
	return v, nil
}

// Verify decides on pkt, the payload of a UDP datagram from src to dst,
// at now. Until a stanza's HMAC authenticates the packet it allocates
// nothing, and a replay of a packet this process saw costs a keyed
// 64-bit hash and no cryptographic hash at all.
//
// Stanzas are tried in order, those whose SOURCE and DESTINATION match,
// as fwknopd does: the first that accepts the packet grants it. When all
// refuse it, the verdict has the reason of the stanza that got furthest
// (see Reason). A replay ends the search at once. A packet that
// authenticated, even if refused, enters the replay cache.
func (v *Verifier) Verify(pkt []byte, src, dst netip.Addr, now time.Time) Verdict {
	if spa.Precheck(pkt) != nil {
		return Verdict{Reason: NotSPA}
	}
	src, dst = src.Unmap(), dst.Unmap()
	matched := false
	for _, st := range v.stanzas {
		if st.MatchSource(src) && st.MatchDestination(dst) {
			matched = true
			break
		}
	}
	if !matched {
		return Verdict{Reason: SourceNotAllowed}
	}
	if v.cache.Seen(pkt, now) {
		return Verdict{Reason: Replay}
	}
	for i := range v.seen {
		v.seen[i] = 0
	}
	best := Verdict{Reason: BadHMAC}
	var auth *authenticated
	for i, st := range v.stanzas {
		if !st.MatchSource(src) || !st.MatchDestination(dst) {
			continue
		}
		m := v.macOf[i]
		if v.seen[m] == 0 {
			v.seen[m] = -1
			if v.macs[m].Verify(pkt) {
				v.seen[m] = 1
			}
		}
		var out Verdict
		if v.seen[m] < 0 {
			out = Verdict{Reason: BadHMAC, Stanza: st}
		} else {
			if auth == nil {
				auth = &authenticated{digest: replay.DigestOf(pkt)}
			}
			out = v.stanza(st, pkt, src, now, auth)
			if out.Reason == Accepted || out.Reason == Replay || out.Reason == CacheFull {
				return out
			}
		}
		if out.Reason > best.Reason || best.Stanza == nil {
			best = out
		}
	}
	if auth != nil && !auth.expires.IsZero() {
		// Refused but genuine: its replays are refused without an HMAC.
		_, _ = v.cache.Add(pkt, auth.digest, auth.expires, now)
	}
	return best
}

// authenticated is what Verify keeps about a packet once an HMAC
// verified it.
type authenticated struct {
	digest  replay.Digest
	expires time.Time // set once a stanza decrypted it and found it fresh
}

// stanza runs the checks after the HMAC for one stanza.
func (v *Verifier) stanza(st *access.Stanza, pkt []byte, src netip.Addr, now time.Time, auth *authenticated) Verdict {
	out := Verdict{Stanza: st}
	if st.Expired(now) {
		out.Reason, out.Detail = StanzaExpired, "expired "+st.Expires.Format(time.RFC3339)
		return out
	}
	body, _, _ := spa.Split(pkt, st.Keys.HMAC)
	msg, err := spa.Open(body, st.Keys.Key, st.Keys.Mode)
	switch {
	case errors.Is(err, spa.ErrUndecryptable):
		out.Reason = Undecryptable
		return out
	case errors.Is(err, spa.ErrDigest):
		out.Reason = BadDigest
		return out
	case err != nil:
		out.Reason, out.Detail = Malformed, err.Error()
		return out
	}
	out.Message = msg
	if diff := now.Unix() - msg.Timestamp; diff > v.maxAge || -diff > v.maxAge {
		out.Reason, out.Detail = Stale, fmt.Sprintf("time difference %ds, at most %ds", diff, v.maxAge)
		return out
	}
	if v.cache.Has(auth.digest, now) {
		// Held but not by this packet's text (restored after a restart):
		// its next copies take the quick path.
		v.cache.Note(pkt, auth.digest)
		out.Reason = Replay
		return out
	}
	auth.expires = time.Unix(msg.Timestamp+v.maxAge+1, 0)
	// fwknopd's order from here: the address, the user, NAT, command,
	// then the ports. Open has checked the message's form.
	addrText, _, _ := strings.Cut(msg.Access, ",")
	allow, err := netip.ParseAddr(addrText)
	if err != nil {
		out.Reason, out.Detail = Malformed, "allow address "+addrText
		return out
	}
	if allow = allow.Unmap(); allow.IsUnspecified() {
		if st.RequireSource {
			out.Reason = SourceRequired
			return out
		}
		allow = src
	}
	if st.RequireUser != "" && msg.User != st.RequireUser {
		out.Reason, out.Detail = UserNotAllowed, fmt.Sprintf("user %q, stanza requires %q", msg.User, st.RequireUser)
		return out
	}
	switch {
	case msg.Type.IsNAT():
		out.Reason, out.Detail = NATRefused, msg.NATAccess
		return out
	case msg.Type == spa.CommandMsg:
		out.Reason, out.Detail = CommandRefused, msg.Access
		return out
	}
	req, err := spa.ParseAccess(msg.Access)
	if err != nil {
		out.Reason, out.Detail = Malformed, err.Error()
		return out
	}
	if len(req.Other) > 0 {
		out.Reason, out.Detail = PortNotAllowed, req.Other[0]+": only tcp and udp ports open"
		return out
	}
	if bad, ok := st.AllowPorts(req.Ports); !ok {
		out.Reason, out.Detail = PortNotAllowed, fmt.Sprintf("%s/%d not allowed", bad.Proto, bad.Num)
		return out
	}
	entry := replay.Entry{Digest: auth.digest, Expires: auth.expires}
	added, err := v.cache.Add(pkt, entry.Digest, entry.Expires, now)
	switch {
	case err != nil:
		out.Reason, out.Detail = CacheFull, err.Error()
		return out
	case !added:
		out.Reason = Replay // a copy got in first
		return out
	}
	out.Reason = Accepted
	out.Request = &Request{
		Allow: allow, Source: src, Ports: dedupe(req.Ports), Timeout: st.Timeout(msg.ClientTimeout),
		User: msg.User, Stanza: st, Sent: time.Unix(msg.Timestamp, 0), Replay: entry,
	}
	return out
}

func dedupe(ps []knock.Port) []knock.Port {
	out := ps[:0:0]
	for _, p := range ps {
		dup := false
		for _, q := range out {
			dup = dup || q == p
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}
