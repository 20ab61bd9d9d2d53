package journal

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// Frame layout; see the package documentation.
const (
	headerLen = 13
	crcOff    = 4 // crc covers bytes [lenOff:] of the frame
	lenOff    = 8
	typeOff   = 12
)

var (
	magic      = []byte{0xFF, 'S', 'J', '1'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

type recType uint8

const (
	typeGrant    recType = 1
	typeExtend   recType = 2
	typeRevoking recType = 3
	typeRevoked  recType = 4
	typeStarted  recType = 5
	typeReplay   recType = 6
	// typePublished: the fleet confirmed a shared grant.
	typePublished recType = 7
	// typeFleetRev: the last fleet revision applied.
	typeFleetRev recType = 8
	typeLast             = typeFleetRev
)

func (t recType) String() string {
	switch t {
	case typeGrant:
		return "grant"
	case typeExtend:
		return "extend"
	case typeRevoking:
		return "revoking"
	case typeRevoked:
		return "revoked"
	case typeStarted:
		return "started"
	case typeReplay:
		return "replay"
	case typePublished:
		return "published"
	case typeFleetRev:
		return "fleet revision"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Payloads. Times are stored in UTC with nanoseconds; ports as number and
// protocol name so the log reads well.
type (
	portWire struct {
		Port  uint16 `json:"port"`
		Proto string `json:"proto"`
	}
	grantWire struct {
		ID       string     `json:"id"`
		Door     string     `json:"door"`
		Source   netip.Addr `json:"source"`
		StopCmd  string     `json:"stop_cmd,omitempty"`
		Open     []portWire `json:"open,omitempty"`
		Backend  string     `json:"backend,omitempty"`
		Start    time.Time  `json:"start"`
		Deadline time.Time  `json:"deadline"`
		// Timeout is a Go duration ("30s"); absent in older logs.
		Timeout      string `json:"timeout,omitempty"`
		StartPending bool   `json:"start_pending,omitempty"`
		// SPA grants: how they were asked for, by whom, and the
		// packet's replay digest.
		Auth   string      `json:"auth,omitempty"`
		User   string      `json:"user,omitempty"`
		Key    string      `json:"key,omitempty"`
		Replay *replayWire `json:"replay,omitempty"`
		// Fleet grants (see Record).
		Shared    string `json:"shared,omitempty"`
		Published bool   `json:"published,omitempty"`
		Origin    string `json:"origin,omitempty"`
	}
	// replayWire is a Replay: the digest in unpadded base64 (as fwknopd
	// writes its digest.cache), the expiry in UTC.
	replayWire struct {
		Digest  string    `json:"digest"`
		Expires time.Time `json:"expires"`
	}
	extendWire struct {
		ID       string    `json:"id"`
		Deadline time.Time `json:"deadline"`
	}
	revokingWire struct {
		ID string `json:"id"`
	}
	revokedWire struct {
		ID string    `json:"id"`
		At time.Time `json:"at"`
		// Forgotten: an admin ended the grant without its stop command
		// succeeding (sesame revoke --forget).
		Forgotten bool `json:"forgotten,omitempty"`
	}
	publishedWire struct {
		ID string `json:"id"`
	}
	// fleetRevWire: every change of fleet group Group up to revision
	// Rev has been applied.
	fleetRevWire struct {
		Group string `json:"group"`
		Rev   int64  `json:"rev"`
	}
	// startedWire: the start command finished at At; the grant's
	// deadline is now Deadline.
	startedWire struct {
		ID       string    `json:"id"`
		At       time.Time `json:"at"`
		Deadline time.Time `json:"deadline"`
	}
)

// appendFrame appends one frame holding payload to buf.
func appendFrame(buf []byte, t recType, payload []byte) []byte {
	start := len(buf)
	buf = append(buf, magic...)
	buf = binary.LittleEndian.AppendUint32(buf, 0) // crc, filled below
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(payload)))
	buf = append(buf, byte(t))
	buf = append(buf, payload...)
	sum := crc32.Checksum(buf[start+lenOff:], castagnoli)
	binary.LittleEndian.PutUint32(buf[start+crcOff:], sum)
	return buf
}

// parseFrame checks the frame at data[0:]. It returns the frame's type,
// payload and total length, or a reason it is not a good frame.
func parseFrame(data []byte) (t recType, payload []byte, n int, reason string) {
	if len(data) < headerLen {
		if bytes.HasPrefix(magic, data[:min(len(data), len(magic))]) {
			return 0, nil, 0, fmt.Sprintf("torn header (%d of %d bytes)", len(data), headerLen)
		}
		return 0, nil, 0, "bad magic"
	}
	if !bytes.Equal(data[:len(magic)], magic) {
		return 0, nil, 0, "bad magic"
	}
	size := binary.LittleEndian.Uint32(data[lenOff:])
	if size > MaxPayload {
		return 0, nil, 0, fmt.Sprintf("payload length %d over limit %d", size, MaxPayload)
	}
	n = headerLen + int(size)
	if len(data) < n {
		return 0, nil, 0, fmt.Sprintf("torn payload (%d of %d bytes)", len(data)-headerLen, size)
	}
	if got, want := crc32.Checksum(data[lenOff:n], castagnoli), binary.LittleEndian.Uint32(data[crcOff:]); got != want {
		return 0, nil, 0, fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	t = recType(data[typeOff])
	if t < typeGrant || t > typeLast {
		return 0, nil, 0, fmt.Sprintf("unknown record type %d", t)
	}
	return t, data[headerLen:n], n, ""
}

func encodeGrant(r *Record) ([]byte, error) {
	w := grantWire{
		ID: r.ID, Door: r.Door, Source: r.Source, StopCmd: r.StopCmd, Backend: r.Backend,
		Start: r.Start.UTC(), Deadline: r.Deadline.UTC(), StartPending: r.StartPending,
	}
	if r.Timeout > 0 {
		w.Timeout = r.Timeout.String()
	}
	w.Auth, w.User, w.Key = r.Auth, r.User, r.Key
	w.Shared, w.Published, w.Origin = r.Shared, r.Published, r.Origin
	if !r.Replay.IsZero() {
		rw := encodeReplay(r.Replay)
		w.Replay = &rw
	}
	for _, p := range r.Open {
		w.Open = append(w.Open, portWire{Port: p.Num, Proto: p.Proto.String()})
	}
	return marshal(w)
}

func decodeGrant(payload []byte) (Record, error) {
	var w grantWire
	if err := json.Unmarshal(payload, &w); err != nil {
		return Record{}, err
	}
	r := Record{
		ID: w.ID, Door: w.Door, Source: w.Source, StopCmd: w.StopCmd, Backend: w.Backend,
		Start: w.Start.UTC(), Deadline: w.Deadline.UTC(), StartPending: w.StartPending,
		Auth: w.Auth, User: w.User, Key: w.Key,
		Shared: w.Shared, Published: w.Published, Origin: w.Origin,
	}
	if w.Replay != nil {
		rp, err := decodeReplay(*w.Replay)
		if err != nil {
			return Record{}, err
		}
		r.Replay = rp
	}
	if w.Timeout != "" {
		d, err := time.ParseDuration(w.Timeout)
		if err != nil {
			return Record{}, fmt.Errorf("bad timeout: %w", err)
		}
		r.Timeout = d
	}
	for _, p := range w.Open {
		proto, err := knock.ParseProto(p.Proto)
		if err != nil {
			return Record{}, err
		}
		r.Open = append(r.Open, knock.Port{Num: p.Port, Proto: proto})
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

func encodeReplay(r Replay) replayWire {
	return replayWire{Digest: base64.RawStdEncoding.EncodeToString(r.Digest[:]), Expires: r.Expires.UTC()}
}

func decodeReplay(w replayWire) (Replay, error) {
	var r Replay
	b, err := base64.RawStdEncoding.DecodeString(w.Digest)
	if err != nil || len(b) != len(r.Digest) {
		return Replay{}, fmt.Errorf("bad replay digest %q", w.Digest)
	}
	if w.Expires.IsZero() {
		return Replay{}, fmt.Errorf("replay %s: no expiry", w.Digest)
	}
	copy(r.Digest[:], b)
	r.Expires = w.Expires.UTC()
	return r, nil
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("record is %d bytes, over the %d byte limit", len(b), MaxPayload)
	}
	return b, nil
}

func decodeFleetRev(payload []byte) (fleetRevWire, error) {
	var w fleetRevWire
	if err := json.Unmarshal(payload, &w); err != nil {
		return w, fmt.Errorf("bad fleet revision record: %w", err)
	}
	if !validNode(w.Group) || w.Rev < 0 {
		return w, fmt.Errorf("bad fleet revision record: group %q, revision %d", w.Group, w.Rev)
	}
	return w, nil
}
