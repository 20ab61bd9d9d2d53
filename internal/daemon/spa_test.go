package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/spa/verify"
	"github.com/sesame-knock/sesame/core/sshknock"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

var (
	spaKey   = bytes.Repeat([]byte{7}, 32)
	spaHMAC  = bytes.Repeat([]byte{9}, 64)
	spaSrv   = netip.MustParseAddr("192.0.2.1")
	spaCli   = netip.MustParseAddr("198.51.100.7")
	spaFlood = netip.MustParseAddr("203.0.113.66")
)

func accessConf(extra string) string {
	return "SOURCE ANY\nOPEN_PORTS tcp/22,tcp/443\nKEY_BASE64 " + base64.StdEncoding.EncodeToString(spaKey) +
		"\nHMAC_KEY_BASE64 " + base64.StdEncoding.EncodeToString(spaHMAC) + "\n" + extra
}

// fwknopPacket is what `sesame spa -A access -a allow` sends at now.
func fwknopPacket(t testing.TB, allow, accessReq string, now time.Time) []byte {
	t.Helper()
	e, err := spa.Encode(spa.Message{User: "alice", Timestamp: now.Unix(), Type: spa.AccessMsg, Access: allow + "," + accessReq},
		spa.Keys{Key: spaKey, HMACKey: spaHMAC}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.Packet
}

// sshKey is an in-memory Ed25519 key and its authorized_keys line.
type sshKey struct {
	signer ssh.Signer
	line   string
}

func newSSHKey(t testing.TB, options, comment string) sshKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey{s, options + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " " + comment}
}

func (k sshKey) knock(t testing.TB, server netip.Addr, now time.Time, ports ...knock.Port) []byte {
	t.Helper()
	b, err := sshknock.Build(rand.Reader, k.signer, sshknock.Knock{Server: server, Ports: ports}, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k sshKey) fingerprint() string { return sshknock.FingerprintOf(k.signer.PublicKey()).String() }

// recordingGrants is the grant manager as the SPA path sees it.
type recordingGrants struct {
	mu       sync.Mutex
	requests []grant.Request
	held     []grant.Grant // what RevokeIf looks at
	revoked  []string
}

func (g *recordingGrants) Grant(r grant.Request, _ time.Time) grant.Outcome {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r)
	g.held = append(g.held, grant.Grant{ID: fmt.Sprint("g", len(g.held)), Door: r.Name, Source: r.Source,
		Auth: r.Auth.Method, User: r.Auth.User, Key: r.Auth.Key})
	return grant.Granted
}

func (g *recordingGrants) RevokeIf(match func(grant.Grant) bool, why string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []string
	keep := g.held[:0]
	for _, h := range g.held {
		if match(h) {
			ids = append(ids, h.ID)
			g.revoked = append(g.revoked, h.User+" "+why)
			continue
		}
		keep = append(keep, h)
	}
	g.held = keep
	return ids
}

func (g *recordingGrants) all() []grant.Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.requests)
}

// spaRig is an spaService with its files, without a daemon around it.
type spaRig struct {
	s      *spaService
	grants *recordingGrants
	log    *syncbuf.Buffer
	now    time.Time
	// The verifier goroutines' work, bound once (a method value
	// allocates).
	fwH, sshH func(*dgram, time.Time)
}

func newSPARig(t testing.TB, accessText string, keys ...sshKey) *spaRig {
	t.Helper()
	r := &spaRig{grants: &recordingGrants{}, log: &syncbuf.Buffer{}, now: time.Unix(1_800_000_000, 0)}
	r.s = newSPA(hclog.New(&hclog.LoggerOptions{Output: r.log, Level: hclog.Debug}), func() time.Time { return r.now }, false)
	t.Cleanup(r.s.lines.Close)
	r.s.grants = r.grants
	r.fwH, r.sshH = r.s.handleFwknop, r.s.handleSSH
	r.s.setLocal([]netip.Addr{spaSrv})
	if err := r.s.commit(r.files(t, accessText, keys...), nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *spaRig) files(t testing.TB, accessText string, keys ...sshKey) *spaFiles {
	t.Helper()
	f := &spaFiles{port: config.DefaultSPAPort, maxAge: config.DefaultSPAMaxAge}
	if accessText != "" {
		a, err := access.Parse("access.conf", []byte(accessText))
		if err != nil {
			t.Fatal(err)
		}
		f.access = a
	}
	if len(keys) > 0 {
		var lines []string
		for _, k := range keys {
			lines = append(lines, k.line)
		}
		ks, err := sshknock.ParseKeys("authorized_keys", []byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		f.keys = ks
	}
	return f
}

// send queues a datagram from src as a capture does and lets the
// verifier of its kind handle what is queued.
func (r *spaRig) send(src netip.Addr, payload []byte) {
	r.s.datagram(knock.Packet{Src: src, Dst: spaSrv, Port: config.DefaultSPAPort, Proto: knock.UDP}, payload)
	for d := r.s.fwq.next(); d != nil; d = r.s.fwq.next() {
		r.fwH(d, r.now)
		r.s.fwq.done()
	}
	for d := r.s.sshq.next(); d != nil; d = r.s.sshq.next() {
		r.sshH(d, r.now)
		r.s.sshq.done()
	}
}

func (r *spaRig) refused(auth, reason int) uint64 { return r.s.refused[auth][reason].Load() }

var tcp22 = knock.Port{Num: 22, Proto: knock.TCP}

// An fwknop packet becomes a grant request for its stanza, with the
// packet's user and replay digest; the same packet again is a replay,
// tampered, stale, wrong-key and wrong-port packets are refused with
// their reasons, and each refusal is counted and logged with its reason.
func TestSPAFwknopPackets(t *testing.T) {
	r := newSPARig(t, accessConf("FW_ACCESS_TIMEOUT 30\n"))
	pkt := fwknopPacket(t, spaCli.String(), "tcp/22", r.now)
	r.send(spaCli, pkt)
	reqs := r.grants.all()
	if len(reqs) != 1 {
		t.Fatalf("requests %+v", reqs)
	}
	q := reqs[0]
	if q.Name != "spa#1" || q.Source != spaCli || !slices.Equal(q.Ports, []knock.Port{tcp22}) || q.Timeout != 30*time.Second ||
		q.Auth != (grant.Auth{Method: "fwknop", User: "alice"}) || q.Replay.IsZero() || !q.Replay.Expires.After(r.now) {
		t.Fatalf("request %+v", q)
	}
	r.send(spaCli, pkt)
	tampered := slices.Clone(pkt)
	tampered[10] = 'A'
	if pkt[10] == 'A' {
		tampered[10] = 'B'
	}
	r.send(spaCli, tampered)
	r.send(spaCli, fwknopPacket(t, spaCli.String(), "tcp/22", r.now.Add(-10*time.Minute)))
	r.send(spaCli, fwknopPacket(t, spaCli.String(), "tcp/2222", r.now))
	e, _ := spa.Encode(spa.Message{User: "mallory", Timestamp: r.now.Unix(), Type: spa.AccessMsg, Access: spaCli.String() + ",tcp/22"},
		spa.Keys{Key: spaKey, HMACKey: bytes.Repeat([]byte{1}, 64)}, nil)
	r.send(spaCli, e.Packet)
	r.send(spaCli, []byte("not an SPA packet at all"))
	if n := len(r.grants.all()); n != 1 {
		t.Errorf("%d grant requests, want the first packet's only", n)
	}
	for _, c := range []struct {
		reason verify.Reason
		n      uint64
	}{{verify.Replay, 1}, {verify.BadHMAC, 2}, {verify.Stale, 1}, {verify.PortNotAllowed, 1}, {verify.NotSPA, 1}} {
		if got := r.refused(authFwknop, int(c.reason)); got != c.n {
			t.Errorf("refused as %s: %d, want %d", c.reason, got, c.n)
		}
	}
	log := r.log.String()
	for _, want := range []string{"OPEN SESAME", "reason=replay", `reason="bad HMAC"`, "reason=stale", `reason="port not allowed"`,
		"event=refused", "auth=fwknop", "user=alice", "stanza_at=access.conf:1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// An SSH-signed knock becomes a request named after its key; a key not
// listed, a packet for another server, a port open= does not list, and a
// replay are refused with their reasons.
func TestSPASSHKnocks(t *testing.T) {
	alice := newSSHKey(t, `open="tcp/22",timeout="60"`, "alice@laptop")
	mallory := newSSHKey(t, `open="tcp/22"`, "mallory")
	r := newSPARig(t, "", alice)
	pkt := alice.knock(t, spaSrv, r.now, tcp22)
	r.send(spaCli, pkt)
	r.send(spaCli, pkt)
	r.send(spaCli, mallory.knock(t, spaSrv, r.now, tcp22))
	r.send(spaCli, alice.knock(t, netip.MustParseAddr("192.0.2.99"), r.now, tcp22))
	r.send(spaCli, alice.knock(t, spaSrv, r.now, knock.Port{Num: 443, Proto: knock.TCP}))
	reqs := r.grants.all()
	if len(reqs) != 1 {
		t.Fatalf("requests %+v", reqs)
	}
	q := reqs[0]
	if q.Name != "ssh" || q.Source != spaCli || q.Timeout != 60*time.Second ||
		q.Auth != (grant.Auth{Method: "ssh", User: "alice@laptop", Key: alice.fingerprint()}) || q.Replay.IsZero() {
		t.Fatalf("request %+v", q)
	}
	for _, c := range []struct {
		reason sshknock.Reason
		n      uint64
	}{{sshknock.Replay, 1}, {sshknock.UnknownKey, 1}, {sshknock.WrongServer, 1}, {sshknock.PortNotAllowed, 1}} {
		if got := r.refused(authSSH, int(c.reason)); got != c.n {
			t.Errorf("refused as %s: %d, want %d", c.reason, got, c.n)
		}
	}
	log := r.log.String()
	for _, want := range []string{"auth=ssh", "user=alice@laptop", alice.fingerprint(), "reason=wrong-server", "server=192.0.2.99", "reason=unknown-key"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	// An fwknop packet with fwknop off: refused as not configured.
	r.send(spaCli, fwknopPacket(t, spaCli.String(), "tcp/22", r.now))
	if r.refused(authFwknop, reasonOff) != 1 {
		t.Error("an fwknop packet without SPA_Access was not refused as not configured")
	}
}

// A reload without a key's line revokes that key's grants, and only
// those; keys that stay keep their spent budgets.
func TestSPAReloadRevokesRemovedKeys(t *testing.T) {
	alice := newSSHKey(t, `open="tcp/22"`, "alice")
	bob := newSSHKey(t, `open="tcp/22"`, "bob")
	r := newSPARig(t, "", alice, bob)
	r.send(spaCli, alice.knock(t, spaSrv, r.now, tcp22))
	r.send(spaCli, bob.knock(t, spaSrv, r.now, tcp22))
	before := r.s.state.Load().ssh
	if err := r.s.commit(r.files(t, "", bob), nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.grants.revoked, []string{"alice key removed"}) {
		t.Errorf("revoked %v, want alice's grant", r.grants.revoked)
	}
	if r.s.state.Load().ssh != before {
		t.Error("the SSH verifier was replaced, losing the budgets spent")
	}
	if !strings.Contains(r.log.String(), "is no longer in SPA_Authorized_Keys: revoking its 1 grants") {
		t.Errorf("log:\n%s", r.log.String())
	}
	r.send(spaCli, alice.knock(t, spaSrv, r.now.Add(time.Second), tcp22))
	if r.refused(authSSH, int(sshknock.UnknownKey)) != 1 {
		t.Error("alice's knock after the reload was not refused as unknown-key")
	}
	// SPA off: every SSH grant goes.
	if err := r.s.commit(nil, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.grants.revoked, []string{"alice key removed", "bob key removed"}) {
		t.Errorf("revoked %v", r.grants.revoked)
	}
}

// A flood of garbage and of replays costs no allocation on its way from
// the capture to its refusal, for fwknop packets and for SSH-signed
// knocks naming an unknown key.
func TestSPAFloodAllocatesNothing(t *testing.T) {
	alice := newSSHKey(t, `open="tcp/22"`, "alice")
	r := newSPARig(t, accessConf(""), alice)
	good := fwknopPacket(t, spaCli.String(), "tcp/22", r.now)
	r.send(spaCli, good)
	garbage := bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"), 8)
	unknown := newSSHKey(t, `open="tcp/22"`, "x").knock(t, spaSrv, r.now, tcp22)
	// Past the refusal lines' burst: what is measured is the flood.
	for range 100 {
		r.send(spaFlood, garbage)
		r.send(spaFlood, good)
		r.send(spaFlood, unknown)
	}
	for name, pkt := range map[string][]byte{"garbage": garbage, "replay": good, "unknown key": unknown} {
		if n := testing.AllocsPerRun(200, func() { r.send(spaFlood, pkt) }); n != 0 {
			t.Errorf("%s: %v allocations per packet", name, n)
		}
	}
	if len(r.grants.all()) != 1 {
		t.Errorf("%d requests", len(r.grants.all()))
	}
}

// The queue's lanes: a flood from one source fills its lane and is
// dropped there, while another source's packet still gets a slot and is
// served next; lanes are served in turn.
func TestDgramQueueLanes(t *testing.T) {
	q := newDgramQueue()
	flood, real := spaFlood, spaCli
	for q.laneOf(real) == q.laneOf(flood) {
		real = real.Next()
	}
	for i := 0; i < 10*laneDepth; i++ {
		q.put(flood, spaSrv, []byte{byte(i)})
	}
	if q.dropped.Load() != 9*laneDepth || q.queued() != laneDepth {
		t.Fatalf("dropped %d, queued %d", q.dropped.Load(), q.queued())
	}
	if !q.put(real, spaSrv, []byte("real")) {
		t.Fatal("the real packet found no room")
	}
	// The flood's lane and the real packet's alternate: the real one is
	// at most second.
	var order []string
	for d := q.next(); d != nil; d = q.next() {
		order = append(order, string(d.payload()))
		q.done()
	}
	if i := slices.Index(order, "real"); i < 0 || i > 1 {
		t.Errorf("the real packet came %d of %d", i+1, len(order))
	}
	if !q.put(real, spaSrv, make([]byte, maxDatagram)) || q.put(real, spaSrv, make([]byte, maxDatagram+1)) || q.oversize.Load() != 1 {
		t.Error("a datagram of maxDatagram bytes must fit, one more must not")
	}
	// IPv6 sources share a lane per /64.
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if q.laneOf(a) != q.laneOf(b) {
		t.Error("two addresses of one /64 in different lanes")
	}
}

// A verifier goroutine that died on a datagram does not take it again.
func TestSPADrainSkipsTheDatagramItDiedOn(t *testing.T) {
	r := newSPARig(t, accessConf(""))
	r.s.datagram(knock.Packet{Src: spaCli, Dst: spaSrv}, []byte("poison"))
	if d := r.s.fwq.next(); d == nil || string(d.payload()) != "poison" {
		t.Fatal("nothing queued")
	}
	// The goroutine died here; a new one starts.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.s.drain(ctx, r.s.fwq, nil, func(d *dgram, _ time.Time) { t.Errorf("handled %q again", d.payload()) })
	if r.s.fwq.queued() != 0 {
		t.Error("the datagram is still queued")
	}
}
