package sshknock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/sshsig"
)

// DefaultMaxAge is how far a knock's timestamp may be from the server's
// clock, either way (fwknopd's MAX_SPA_PACKET_AGE, Sesame's SPA_Max_Age).
const DefaultMaxAge = 120 * time.Second

// ReplayCache is what the Verifier needs of the replay cache it shares
// with fwknop SPA packets. The daemon owns the cache: it journals the
// digest of each accepted knock with its grant (Request.Digest, kept
// until Request.ReplayUntil) so that replays are refused after a restart.
// Both methods must be safe to call from the goroutines that call Verify.
type ReplayCache interface {
	// Seen reports whether digest is recorded and still kept at now.
	Seen(digest [32]byte, now time.Time) bool
	// Add records digest until the time until (inclusive). It reports
	// false when digest was already recorded: a copy of the same packet
	// got there first, and this one is a replay.
	Add(digest [32]byte, until time.Time) bool
}

// Options configure a Verifier.
type Options struct {
	// IsLocal reports whether an address is one of this host's: a knock
	// for another server address is refused. Required. A host behind NAT
	// should also answer true for its public address.
	IsLocal func(netip.Addr) bool
	// Replay is the shared replay cache. Required.
	Replay ReplayCache
	// MaxAge bounds the timestamp's distance from now; 0 means
	// DefaultMaxAge.
	MaxAge time.Duration
	// KeyBudget and TotalBudget bound signature checks per key and
	// overall, weighted by CheckCost; zero values mean DefaultKeyBudget
	// and DefaultTotalBudget.
	KeyBudget, TotalBudget Budget
	// SourceBudget bounds signature checks per source (an IPv4 address,
	// an IPv6 /64), in checks whatever the key type, before the key's
	// and the total budget are asked: a flood of forged packets naming
	// an authorized key from a few addresses spends their budgets, not
	// the key's. Zero means DefaultSourceBudget.
	SourceBudget Budget
}

// Reason is why a knock was refused, or Accepted.
type Reason uint8

// Reasons, in the order the Verifier checks them.
const (
	Accepted           Reason = iota
	Malformed                 // not a well-formed version-1 knock
	UnknownKey                // its fingerprint is not in authorized_keys
	Stale                     // timestamp further than MaxAge from now
	WrongServer               // meant for an address that is not this host's
	Replay                    // seen before
	SourceBudget              // this source's signature budget is spent
	KeyBudget                 // this key's signature budget is spent
	TotalBudget               // the overall signature budget is spent
	BadSignature              // the signature does not verify
	NoUserPresence            // FIDO signature without a touch
	NoUserVerification        // FIDO signature without PIN/biometric, and verify-required
	SourceNotAllowed          // source or allow address outside from=
	KeyExpired                // past the key's expiry-time
	PortNotAllowed            // asks for a port open= does not list
)

var reasonNames = [...]string{
	Accepted: "accepted", Malformed: "malformed", UnknownKey: "unknown-key", Stale: "stale",
	WrongServer: "wrong-server", Replay: "replay", SourceBudget: "source-budget", KeyBudget: "key-budget", TotalBudget: "total-budget",
	BadSignature: "bad-signature", NoUserPresence: "no-user-presence", NoUserVerification: "no-user-verification",
	SourceNotAllowed: "source-not-allowed", KeyExpired: "key-expired", PortNotAllowed: "port-not-allowed",
}

// String returns the reason's stable name (for journald fields and metrics).
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Verdict is Verify's outcome.
type Verdict struct {
	Reason Reason
	// Key is the authorized key the packet named: set from Stale on
	// (so a refusal can say whose key it claimed), nil before.
	Key *Key
	// Time and Server are the packet's timestamp and server address,
	// set from Stale and WrongServer on respectively.
	Time   time.Time
	Server netip.Addr
	// Detail says more for refusals after the signature check (which
	// address, which port); empty for the cheap refusals.
	Detail string
	// Request is the accepted knock; set only when Reason is Accepted.
	Request Request
}

// Request is an accepted knock: what the daemon grants and journals.
type Request struct {
	Allow       netip.Addr    // the address to open for
	Source      netip.Addr    // the packet's source
	Server      netip.Addr    // the server address it was meant for
	Ports       []knock.Port  // what to open (all within the key's open=)
	Timeout     time.Duration // the grant's length (the key's timeout= at most)
	Comment     string        // the key's comment: who knocked
	Fingerprint Fingerprint   // the key's SHA-256 fingerprint
	KeyType     string        // e.g. ssh-ed25519
	Time        time.Time     // the packet's timestamp
	Digest      [32]byte      // the replay digest (journal it with the grant)
	ReplayUntil time.Time     // keep Digest in the replay cache until then
	FIDO        sshsig.Details
}

// Verifier checks knocks against an authorized_keys file. Verify may be
// called from any number of goroutines; SetKeys swaps the keys while
// they run.
type Verifier struct {
	opts  Options
	table atomic.Pointer[keyTable]

	mu    sync.Mutex // guards all following fields and every bucket in table.budgets
	total bucket
	// sources holds the buckets of sources that spent some of their
	// budget lately, at most MaxSources; sources past that share
	// overflow.
	sources  map[netip.Prefix]*bucket
	overflow bucket
}

// MaxSources bounds the sources whose signature budgets are tracked one
// by one; under a flood from more addresses than that, the others share
// one budget.
const MaxSources = 4096

// sourceOf is the prefix a source's budget is kept for: the address for
// IPv4, its /64 for IPv6 (one host's share of a network).
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// keyTable is the keys and their budgets, swapped whole by SetKeys.
type keyTable struct {
	keys    *Keys
	budgets map[Fingerprint]*keyBudget // fixed keys; bucket values guarded by Verifier.mu
}

// keyBudget is one key's bucket and the cost of checking its signatures.
type keyBudget struct {
	bucket bucket
	cost   int
}

// NewVerifier returns a Verifier for keys (nil: no keys yet).
func NewVerifier(keys *Keys, opts Options) (*Verifier, error) {
	if opts.IsLocal == nil || opts.Replay == nil {
		return nil, errors.New("sshknock.NewVerifier: IsLocal and Replay are required")
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	opts.KeyBudget = opts.KeyBudget.orDefault(DefaultKeyBudget)
	opts.TotalBudget = opts.TotalBudget.orDefault(DefaultTotalBudget)
	if opts.SourceBudget.Every <= 0 || opts.SourceBudget.Burst <= 0 {
		opts.SourceBudget = DefaultSourceBudget
	}
	v := &Verifier{opts: opts, sources: make(map[netip.Prefix]*bucket)}
	v.SetKeys(keys)
	return v, nil
}

// SetKeys replaces the authorized keys (a reload). Keys that stay keep
// their spent budget. The caller revokes the grants of removed keys
// (Keys.Removed says which).
func (v *Verifier) SetKeys(keys *Keys) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := &keyTable{keys: keys, budgets: make(map[Fingerprint]*keyBudget)}
	old := v.table.Load()
	if keys != nil {
		for _, k := range keys.List {
			b := &keyBudget{cost: CheckCost(k.Public)}
			if old != nil && old.budgets[k.Fingerprint] != nil {
				b.bucket = old.budgets[k.Fingerprint].bucket
			}
			t.budgets[k.Fingerprint] = b
		}
	}
	v.table.Store(t)
}

// Keys returns the keys in force.
func (v *Verifier) Keys() *Keys { return v.table.Load().keys }

// Verify checks datagram b, received from src at now, in this order:
// known fingerprint (an unknown one costs a map lookup and no
// allocation), timestamp within MaxAge, server address one of this
// host's, replay cache, signature budget (the source's, the key's, then
// the total),
// SSHSIG signature in namespace sesame-knock (FIDO: user presence, and
// user verification when verify-required), from= for the source and the
// allow address, expiry-time, ports within open=. An accepted knock is
// added to the replay cache before Verify returns. A requested timeout of
// 0 or above the key's timeout= becomes the key's timeout.
func (v *Verifier) Verify(b []byte, src netip.Addr, now time.Time) Verdict {
	fp, ok := fingerprintOf(b)
	if !ok {
		return Verdict{Reason: Malformed}
	}
	t := v.table.Load()
	key := t.keys.Lookup(fp)
	if key == nil {
		return Verdict{Reason: UnknownKey}
	}
	vd := Verdict{Key: key}
	ts := binary.BigEndian.Uint64(b[offTime:])
	if ts > maxUnix {
		vd.Reason = Stale
		return vd
	}
	vd.Time = time.Unix(int64(ts), 0)
	if age := now.Sub(vd.Time); age > v.opts.MaxAge || age < -v.opts.MaxAge {
		vd.Reason = Stale
		return vd
	}
	p, err := Decode(b)
	if err != nil {
		vd.Reason, vd.Detail = Malformed, err.Error()
		return vd
	}
	vd.Server = p.Server
	if !v.opts.IsLocal(p.Server) {
		vd.Reason = WrongServer
		return vd
	}
	digest := p.Digest()
	if v.opts.Replay.Seen(digest, now) {
		vd.Reason = Replay
		return vd
	}
	if r := v.spend(t, fp, src, now); r != Accepted {
		vd.Reason = r
		return vd
	}

	details, err := verifySignature(key, &p)
	switch {
	case errors.Is(err, sshsig.ErrNoUserPresence):
		vd.Reason = NoUserPresence
		return vd
	case errors.Is(err, sshsig.ErrNoUserVerification):
		vd.Reason = NoUserVerification
		return vd
	case err != nil:
		vd.Reason, vd.Detail = BadSignature, err.Error()
		return vd
	}

	src = src.Unmap()
	allow := p.Allow
	if !allow.IsValid() {
		allow = src
	}
	if !key.AllowsAddr(src) {
		vd.Reason, vd.Detail = SourceNotAllowed, "source "+src.String()+" is outside from="
		return vd
	}
	if !key.AllowsAddr(allow) {
		vd.Reason, vd.Detail = SourceNotAllowed, "allow address "+allow.String()+" is outside from="
		return vd
	}
	if key.Expired(now) {
		vd.Reason, vd.Detail = KeyExpired, "expired at "+key.Expiry.Format(time.RFC3339)
		return vd
	}
	for _, pt := range p.Ports() {
		if !key.AllowsPort(pt) {
			vd.Reason, vd.Detail = PortNotAllowed, fmt.Sprintf("%s/%d is not in open=%q", pt.Proto, pt.Num, FormatAccess(key.Open))
			return vd
		}
	}
	timeout := p.Timeout
	if timeout == 0 || timeout > key.Timeout {
		timeout = key.Timeout
	}
	until := vd.Time.Add(v.opts.MaxAge)
	if !v.opts.Replay.Add(digest, until) {
		vd.Reason = Replay
		return vd
	}
	vd.Reason = Accepted
	vd.Request = Request{
		Allow: allow, Source: src, Server: p.Server,
		Ports:   append([]knock.Port(nil), p.Ports()...),
		Timeout: timeout, Comment: key.Comment, Fingerprint: fp, KeyType: key.Public.Type(),
		Time: vd.Time, Digest: digest, ReplayUntil: until, FIDO: details,
	}
	return vd
}

// maxUnix bounds timestamps so that time arithmetic cannot overflow.
const maxUnix = 1 << 40

// spend takes one check from the source's budget and the key's check
// cost from its budget and the total one, or says which is short
// (taking nothing).
func (v *Verifier) spend(t *keyTable, fp Fingerprint, src netip.Addr, now time.Time) Reason {
	n := now.UnixNano()
	v.mu.Lock()
	defer v.mu.Unlock()
	sb := v.sourceLocked(sourceOf(src), n)
	if !sb.canTake(n, v.opts.SourceBudget, 1) {
		return SourceBudget
	}
	kb := t.budgets[fp]
	if !kb.bucket.canTake(n, v.opts.KeyBudget, kb.cost) {
		return KeyBudget
	}
	if !v.total.canTake(n, v.opts.TotalBudget, kb.cost) {
		return TotalBudget
	}
	sb.take(n, v.opts.SourceBudget, 1)
	kb.bucket.take(n, v.opts.KeyBudget, kb.cost)
	v.total.take(n, v.opts.TotalBudget, kb.cost)
	return Accepted
}

// sourceLocked returns src's bucket: its own, a new one while fewer
// than MaxSources are tracked (forgetting those that are full again
// first when there are that many), else the shared overflow bucket.
func (v *Verifier) sourceLocked(src netip.Prefix, now int64) *bucket {
	if b := v.sources[src]; b != nil {
		return b
	}
	if len(v.sources) >= MaxSources {
		for p, b := range v.sources {
			if b.full <= now {
				delete(v.sources, p)
			}
		}
	}
	if len(v.sources) >= MaxSources {
		return &v.overflow
	}
	b := &bucket{}
	v.sources[src] = b
	return b
}

// verifySignature checks p's SSHSIG signature by key.
func verifySignature(key *Key, p *Packet) (sshsig.Details, error) {
	sig, err := sshsig.ParseSSHSignature(p.Signature)
	if err != nil {
		return sshsig.Details{}, err
	}
	digest, err := sshsig.Digest(string(p.HashAlg), p.Body)
	if err != nil {
		return sshsig.Details{}, err
	}
	data := sshsig.SignedData(Namespace, string(p.HashAlg), digest)
	return sshsig.VerifySignedData(key.Public, data, sig, sshsig.Policy{VerifyRequired: key.VerifyRequired})
}
