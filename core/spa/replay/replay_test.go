package replay

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1700000000, 0)

func TestAddSeenExpire(t *testing.T) {
	c := New()
	p := []byte("packet one")
	d := DigestOf(p)
	if c.Seen(p, t0) || c.Has(d, t0) {
		t.Fatal("empty cache holds a packet")
	}
	if ok, err := c.Add(p, d, t0.Add(120*time.Second), t0); !ok || err != nil {
		t.Fatalf("Add: %v %v", ok, err)
	}
	if !c.Seen(p, t0) || !c.Has(d, t0.Add(119*time.Second)) {
		t.Fatal("added packet not found")
	}
	if ok, _ := c.Add(p, d, t0.Add(200*time.Second), t0.Add(time.Second)); ok {
		t.Fatal("second Add of the same packet succeeded")
	}
	if c.Seen([]byte("packet two"), t0) {
		t.Fatal("another packet found")
	}
	exp := t0.Add(120 * time.Second)
	if c.Seen(p, exp) || c.Has(d, exp) {
		t.Fatal("entry outlives its expiry")
	}
	// Once expired the packet may be added again (it would be stale).
	if ok, _ := c.Add(p, d, exp.Add(time.Minute), exp); !ok {
		t.Fatal("re-Add after expiry refused")
	}
	// The sweep drops expired entries.
	c.Add([]byte("x"), DigestOf([]byte("x")), exp.Add(time.Second), exp)
	later := exp.Add(2 * sweepEvery)
	c.Add([]byte("y"), DigestOf([]byte("y")), later.Add(time.Second), later)
	if n := c.Len(); n != 1 {
		t.Fatalf("%d entries after the sweep, want 1", n)
	}
}

// Seen confirms the quick hash with the packet's length and tail: a
// packet indexed under the same hash but different is not seen.
func TestSeenConfirmsTail(t *testing.T) {
	c := New()
	p := []byte("a packet ending in its HMAC: 0123456789abcdef0123456789abcdef")
	c.Add(p, DigestOf(p), t0.Add(time.Minute), t0)
	h := maphash.Bytes(c.seed, p)
	for _, other := range [][]byte{
		[]byte("a packet ending in its HMAC: 0123456789abcdef0123456789abcdeX"),
		[]byte("short"),
	} {
		// Pretend other collided with p's hash.
		c.quick[maphash.Bytes(c.seed, other)] = c.quick[h]
		if c.Seen(other, t0) {
			t.Fatalf("Seen(%q) trusted a colliding hash", other)
		}
	}
	if !c.Seen(p, t0) {
		t.Fatal("the packet itself is not seen")
	}
}

type store []Entry

func (s store) Replays() ([]Entry, error) { return s, nil }

type failing struct{}

func (failing) Replays() ([]Entry, error) { return nil, errors.New("disk on fire") }

// After a restart the journal's entries refill the cache: a replay is
// refused by digest.
func TestLoad(t *testing.T) {
	p := []byte("accepted before the restart")
	old := New()
	old.Add(p, DigestOf(p), t0.Add(100*time.Second), t0)
	journal := store(append(old.Entries(t0), Entry{Digest: DigestOf([]byte("stale")), Expires: t0.Add(-time.Second)}))

	c := New()
	n, err := c.Load(journal, t0.Add(10*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("Load: %d, %v; want 1 entry (the expired one skipped)", n, err)
	}
	if !c.Has(DigestOf(p), t0.Add(99*time.Second)) || c.Has(DigestOf(p), t0.Add(100*time.Second)) {
		t.Fatal("restored entry does not keep its expiry")
	}
	if _, err := c.Load(failing{}, t0); err == nil {
		t.Fatal("Load hid the store's error")
	}
	d, err := ParseDigest(DigestOf(p).String())
	if err != nil || d != DigestOf(p) {
		t.Fatalf("ParseDigest round trip: %v", err)
	}
	if len(DigestOf(p).String()) != 43 {
		t.Fatal("digest string is not fwknopd's 43 characters")
	}
}

func TestFull(t *testing.T) {
	c := New()
	for i := 0; i < MaxEntries; i++ {
		p := []byte(fmt.Sprint(i))
		if _, err := c.Add(p, DigestOf(p), t0.Add(time.Minute), t0); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	p := []byte("one too many")
	if _, err := c.Add(p, DigestOf(p), t0.Add(time.Minute), t0); !errors.Is(err, ErrFull) {
		t.Fatalf("Add to a full cache: %v", err)
	}
	// Room again once the entries expire.
	if ok, err := c.Add(p, DigestOf(p), t0.Add(2*time.Minute), t0.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Add after expiry: %v %v", ok, err)
	}
}

// Two goroutines adding the same packet: exactly one wins.
func TestAddRace(t *testing.T) {
	for round := 0; round < 200; round++ {
		c := New()
		p := []byte(fmt.Sprint("packet", round))
		var wg sync.WaitGroup
		wins := make(chan bool, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, _ := c.Add(p, DigestOf(p), t0.Add(time.Minute), t0)
				wins <- ok
			}()
		}
		wg.Wait()
		close(wins)
		n := 0
		for ok := range wins {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d winners", round, n)
		}
	}
}

func TestSeenDoesNotAllocate(t *testing.T) {
	c := New()
	p := []byte("some packet text of a realistic length, well, sort of")
	c.Add(p, DigestOf(p), t0.Add(time.Minute), t0)
	q := []byte("garbage")
	if n := testing.AllocsPerRun(100, func() { c.Seen(p, t0); c.Seen(q, t0) }); n != 0 {
		t.Fatalf("Seen allocates %.1f times", n)
	}
}

func TestAddDigest(t *testing.T) {
	c := New()
	now := time.Unix(1_800_000_000, 0)
	d := DigestOf([]byte("an SSH knock's body"))
	if ok, err := c.AddDigest(d, now.Add(time.Minute), now); !ok || err != nil {
		t.Fatalf("AddDigest: %v, %v", ok, err)
	}
	if ok, _ := c.AddDigest(d, now.Add(2*time.Minute), now.Add(time.Second)); ok {
		t.Error("a digest held was added again")
	}
	if !c.Has(d, now.Add(59*time.Second)) || c.Has(d, now.Add(time.Minute)) {
		t.Error("Has does not see the digest until its expiry")
	}
	if ok, _ := c.AddDigest(d, now.Add(3*time.Minute), now.Add(time.Minute)); !ok {
		t.Error("an expired digest could not be added again")
	}
}

// A digest restored from the journal is found by Has only, until Note
// ties the packet's text to it; Note ignores digests not held.
func TestNote(t *testing.T) {
	p := []byte("accepted before the restart, its HMAC at the end")
	c := New()
	if _, err := c.Restore([]Entry{{Digest: DigestOf(p), Expires: t0.Add(time.Minute)}}, t0); err != nil {
		t.Fatal(err)
	}
	if c.Seen(p, t0) {
		t.Fatal("a restored digest is Seen before Note")
	}
	c.Note(p, DigestOf(p))
	if !c.Seen(p, t0.Add(time.Second)) {
		t.Fatal("Note did not make the packet Seen")
	}
	if c.Seen(p, t0.Add(time.Minute)) {
		t.Fatal("a noted packet outlives its digest's expiry")
	}
	other := []byte("never accepted")
	c.Note(other, DigestOf(other))
	if c.Seen(other, t0) || c.Has(DigestOf(other), t0) {
		t.Fatal("Note added a digest the cache did not hold")
	}
}
