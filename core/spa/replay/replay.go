// Package replay remembers the SPA packets already used, keyed by the
// digest fwknopd's replay cache uses (SHA-256 of the packet text as
// received, in unpadded base64 in its digest.cache), each until the
// packet is too old to be accepted anyway. A packet this process has
// seen is found without a cryptographic hash (a seeded 64-bit hash and
// the packet's last bytes, which end in its HMAC), so a flood of replays
// costs much less than one HMAC each.
//
// The cache is memory; durability is the daemon's: it journals each
// accepted packet's Entry with the grant and gives them back through a
// Store on start, so a replay is refused also after a restart.
package replay

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// Digest is fwknopd's replay digest of a packet: SHA-256 of its text.
type Digest [sha256.Size]byte

// DigestOf returns pkt's digest.
func DigestOf(pkt []byte) Digest { return sha256.Sum256(pkt) }

// String is the digest as fwknopd writes it: unpadded base64.
func (d Digest) String() string { return base64.RawStdEncoding.EncodeToString(d[:]) }

// ParseDigest reads String's form back.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("replay.ParseDigest %q: want %d bytes in unpadded base64", s, len(d))
	}
	copy(d[:], b)
	return d, nil
}

// Entry is one remembered packet: what the journal must keep.
type Entry struct {
	Digest Digest
	// Expires is when the packet can no longer be accepted (its
	// timestamp plus the maximum age); the entry is dropped then.
	Expires time.Time
}

// Store gives back the entries the daemon journaled.
type Store interface {
	// Replays returns the entries recorded; expired ones may be included
	// (Load skips them).
	Replays() ([]Entry, error)
}

// MaxEntries bounds the cache. Only packets that authenticated enter it,
// but a key holder flooding fresh packets must not exhaust memory: when
// it is full of unexpired entries, Add fails and the packet is refused.
const MaxEntries = 1 << 18

// ErrFull is Add's error when the cache holds MaxEntries live entries.
var ErrFull = errors.New("replay cache full")

const sweepEvery = time.Minute

// Cache is safe for concurrent use.
type Cache struct {
	seed maphash.Seed

	mu sync.Mutex // guards all fields below
	// byDigest holds every remembered digest with its expiry.
	byDigest map[Digest]time.Time
	// quick maps the seeded hash of a packet's text to what identifies
	// it, for packets added by this process.
	quick     map[uint64]quickEntry
	nextSweep time.Time
}

// quickEntry identifies a packet by its length and last bytes (the end
// of its HMAC, which nobody without the key can predict) on top of the
// seeded 64-bit hash that indexes it.
type quickEntry struct {
	digest Digest
	n      int
	tail   [tailLen]byte
}

const tailLen = 32

func tailOf(pkt []byte) (t [tailLen]byte) {
	copy(t[:], pkt[max(0, len(pkt)-tailLen):])
	return t
}

// New returns an empty cache.
func New() *Cache {
	return &Cache{seed: maphash.MakeSeed(), byDigest: map[Digest]time.Time{}, quick: map[uint64]quickEntry{}}
}

// Seen reports whether pkt is a packet this process added to the cache,
// unexpired at now. It neither allocates nor computes a cryptographic
// hash: a match needs the seeded 64-bit hash, the length and the last 32
// bytes to agree, which a fresh packet's HMAC never does by chance (and
// a crafted packet that matches is refused either way). A packet
// restored from a Store is not found here (the hash seed is per
// process); Has finds it.
func (c *Cache) Seen(pkt []byte, now time.Time) bool {
	h := maphash.Bytes(c.seed, pkt)
	c.mu.Lock()
	defer c.mu.Unlock()
	q, ok := c.quick[h]
	return ok && q.n == len(pkt) && q.tail == tailOf(pkt) && now.Before(c.byDigest[q.digest])
}

// Has reports whether d is held, unexpired at now.
func (c *Cache) Has(d Digest, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.byDigest[d]
	return ok && now.Before(exp)
}

// Add remembers pkt (whose digest is d) until expires. It returns false
// when d is already held (a copy of the packet got in first), and ErrFull
// when the cache has no room.
func (c *Cache) Add(pkt []byte, d Digest, expires, now time.Time) (bool, error) {
	h := maphash.Bytes(c.seed, pkt)
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.byDigest[d]; ok && now.Before(exp) {
		return false, nil
	}
	if err := c.roomLocked(now); err != nil {
		return false, err
	}
	c.byDigest[d] = expires
	c.quick[h] = quickEntry{digest: d, n: len(pkt), tail: tailOf(pkt)}
	return true, nil
}

// Note makes Seen find pkt, whose digest d is held (restored from a
// Store, or added without the packet): its next replays then cost a
// keyed hash instead of an HMAC and a decryption. It does nothing when
// d is not held.
func (c *Cache) Note(pkt []byte, d Digest) {
	h := maphash.Bytes(c.seed, pkt)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byDigest[d]; ok {
		c.quick[h] = quickEntry{digest: d, n: len(pkt), tail: tailOf(pkt)}
	}
}

// AddDigest remembers digest d until expires, without the packet (an
// SSH-signed knock, whose digest is of its body): Has finds it, Seen
// does not. It returns false when d is already held, and ErrFull when
// the cache has no room.
func (c *Cache) AddDigest(d Digest, expires, now time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.byDigest[d]; ok && now.Before(exp) {
		return false, nil
	}
	if err := c.roomLocked(now); err != nil {
		return false, err
	}
	c.byDigest[d] = expires
	return true, nil
}

// roomLocked sweeps expired entries once a minute, or at once when the
// cache is full.
func (c *Cache) roomLocked(now time.Time) error {
	if len(c.byDigest) >= MaxEntries || !now.Before(c.nextSweep) {
		c.sweepLocked(now)
	}
	if len(c.byDigest) >= MaxEntries {
		return ErrFull
	}
	return nil
}

func (c *Cache) sweepLocked(now time.Time) {
	for h, q := range c.quick {
		if !now.Before(c.byDigest[q.digest]) {
			delete(c.quick, h)
		}
	}
	for d, exp := range c.byDigest {
		if !now.Before(exp) {
			delete(c.byDigest, d)
		}
	}
	c.nextSweep = now.Add(sweepEvery)
}

// Restore adds entries not yet expired at now and returns how many it
// added. An entry already held keeps the later expiry.
func (c *Cache) Restore(es []Entry, now time.Time) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range es {
		if !now.Before(e.Expires) {
			continue
		}
		if exp, ok := c.byDigest[e.Digest]; ok {
			if e.Expires.After(exp) {
				c.byDigest[e.Digest] = e.Expires
			}
			continue
		}
		if err := c.roomLocked(now); err != nil {
			return n, err
		}
		c.byDigest[e.Digest] = e.Expires
		n++
	}
	return n, nil
}

// Load restores what s holds (see Restore).
func (c *Cache) Load(s Store, now time.Time) (int, error) {
	es, err := s.Replays()
	if err != nil {
		return 0, fmt.Errorf("replay.Load: %w", err)
	}
	return c.Restore(es, now)
}

// Len is the number of entries held, expired or not yet swept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byDigest)
}

// Entries returns the unexpired entries (for tests and `sesame` tools).
func (c *Cache) Entries(now time.Time) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Entry
	for d, exp := range c.byDigest {
		if now.Before(exp) {
			out = append(out, Entry{Digest: d, Expires: exp})
		}
	}
	return out
}
