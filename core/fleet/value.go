package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// Version is the grant value format this package writes and reads.
const Version = 1

// Limits on a grant value; anything outside them is refused.
const (
	MaxValueLen    = 8 << 10 // bytes of JSON
	MaxDoorLen     = 256
	MaxIdentityLen = 1024
	MaxPorts       = 64
)

// Grant is one fleet grant: what the origin node granted, for the group
// to apply. Its ID is the origin's grant id (journal.NewID), which every
// node uses for its own copy, so `sesame revoke ID` means the same grant
// everywhere.
type Grant struct {
	ID       string
	Door     string       // the door's name; it must exist on every node
	Source   netip.Addr   // the knocker
	Open     []knock.Port // the door's native ports; empty for a door that only runs commands
	Deadline time.Time    // absolute; every node's grant ends then
	Origin   string       // the node that granted it (Config.Node)
	Identity string       // who signed the packet (SPA, SSH key); "" for knocks
}

// wire is the JSON form. Field names are short but readable in etcdctl.
type wire struct {
	V        int      `json:"v"`
	ID       string   `json:"id"`
	Door     string   `json:"door"`
	Source   string   `json:"source"`
	Ports    []string `json:"ports"`
	Deadline string   `json:"deadline"`
	Origin   string   `json:"origin"`
	Identity string   `json:"identity,omitempty"`
}

// ValueError is a grant key or value that was refused. errors.Is(err,
// ErrBadValue) holds for every ValueError.
type ValueError struct {
	Key string // the etcd key, "" when not known
	Err error
}

func (e *ValueError) Error() string {
	if e.Key == "" {
		return "fleet grant: " + e.Err.Error()
	}
	return "fleet grant " + e.Key + ": " + e.Err.Error()
}
func (e *ValueError) Unwrap() error        { return e.Err }
func (e *ValueError) Is(target error) bool { return target == ErrBadValue }

func badValue(format string, args ...any) error {
	return &ValueError{Err: fmt.Errorf(format, args...)}
}

// Validate checks a grant's fields; Marshal and Parse both use it, so a
// value this package writes is one it reads.
func (g *Grant) Validate() error {
	if !journal.ValidID(g.ID) {
		return badValue("bad id %q: want 1-%d of [A-Za-z0-9_-]", g.ID, journal.MaxIDLen)
	}
	if err := checkText("door", g.Door, MaxDoorLen, false); err != nil {
		return err
	}
	if !g.Source.IsValid() || g.Source.Zone() != "" || g.Source.Is4In6() {
		return badValue("bad source address %q", g.Source)
	}
	if g.Source.IsUnspecified() || g.Source.IsMulticast() {
		return badValue("source address %s cannot knock", g.Source)
	}
	if len(g.Open) > MaxPorts {
		return badValue("%d ports, at most %d", len(g.Open), MaxPorts)
	}
	seen := make(map[knock.Port]bool, len(g.Open))
	for _, p := range g.Open {
		if p.Num == 0 || (p.Proto != knock.TCP && p.Proto != knock.UDP) {
			return badValue("bad port %s", p)
		}
		if seen[p] {
			return badValue("port %s listed twice", p)
		}
		seen[p] = true
	}
	if g.Deadline.IsZero() || g.Deadline.Year() < 2000 || g.Deadline.Year() > 9999 {
		return badValue("bad deadline %s", g.Deadline)
	}
	if err := checkName(g.Origin, MaxNodeLen); err != nil {
		return badValue("bad origin node: %v", err)
	}
	return checkText("identity", g.Identity, MaxIdentityLen, true)
}

// checkText accepts valid UTF-8 without control characters (the value
// ends up in logs and `sesame grants` output).
func checkText(field, s string, max int, empty bool) error {
	if s == "" {
		if empty {
			return nil
		}
		return badValue("empty %s", field)
	}
	if len(s) > max {
		return badValue("%s longer than %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return badValue("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return badValue("%s holds control character %U", field, r)
		}
	}
	return nil
}

// Marshal returns the value stored under the grant's key.
func (g *Grant) Marshal() ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	w := wire{
		V: Version, ID: g.ID, Door: g.Door, Source: g.Source.String(),
		Ports:    make([]string, len(g.Open)),
		Deadline: g.Deadline.UTC().Format(time.RFC3339Nano),
		Origin:   g.Origin, Identity: g.Identity,
	}
	for i, p := range g.Open {
		w.Ports[i] = fmt.Sprintf("%d/%s", p.Num, p.Proto)
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxValueLen {
		return nil, badValue("value is %d bytes, at most %d", len(b), MaxValueLen)
	}
	return b, nil
}

// fields are the value's members: required ones must be present.
var fields = map[string]bool{
	"v": true, "id": true, "door": true, "source": true, "ports": true,
	"deadline": true, "origin": true, "identity": false,
}

// Parse reads a grant value strictly: one JSON object of known members,
// each once and of its type (no nulls), format version 1, every field
// valid (Validate), nothing after it. Anything else is a *ValueError.
// An unknown version wraps ErrUnsupportedVersion: a newer node wrote it.
func Parse(value []byte) (Grant, error) {
	g, err := parse(value)
	if err != nil {
		var ve *ValueError
		if !errors.As(err, &ve) {
			err = &ValueError{Err: err}
		}
	}
	return g, err
}

func parse(value []byte) (Grant, error) {
	if len(value) > MaxValueLen {
		return Grant{}, fmt.Errorf("value is %d bytes, at most %d", len(value), MaxValueLen)
	}
	if !utf8.Valid(value) {
		return Grant{}, errors.New("value is not valid UTF-8")
	}
	raw, err := members(value)
	if err != nil {
		return Grant{}, err
	}
	var w wire
	if err := number(raw["v"], &w.V); err != nil {
		return Grant{}, fmt.Errorf("member \"v\": %v", err)
	}
	if w.V != Version {
		return Grant{}, fmt.Errorf("%w %d (this Sesame reads %d)", ErrUnsupportedVersion, w.V, Version)
	}
	for name, dst := range map[string]*string{
		"id": &w.ID, "door": &w.Door, "source": &w.Source, "deadline": &w.Deadline,
		"origin": &w.Origin, "identity": &w.Identity,
	} {
		if r, ok := raw[name]; ok {
			if err := str(r, dst); err != nil {
				return Grant{}, fmt.Errorf("member %q: %v", name, err)
			}
		}
	}
	if r := raw["ports"]; len(r) == 0 || r[0] != '[' {
		return Grant{}, errors.New("member \"ports\": not an array")
	}
	var ports []json.RawMessage
	if err := json.Unmarshal(raw["ports"], &ports); err != nil {
		return Grant{}, fmt.Errorf("member \"ports\": %v", err)
	}
	if len(ports) > MaxPorts {
		return Grant{}, fmt.Errorf("%d ports, at most %d", len(ports), MaxPorts)
	}
	g := Grant{ID: w.ID, Door: w.Door, Origin: w.Origin, Identity: w.Identity}
	for _, r := range ports {
		var s string
		if err := str(r, &s); err != nil {
			return Grant{}, fmt.Errorf("member \"ports\": %v", err)
		}
		p, err := parsePort(s)
		if err != nil {
			return Grant{}, err
		}
		g.Open = append(g.Open, p)
	}
	g.Source, err = netip.ParseAddr(w.Source)
	if err != nil {
		return Grant{}, fmt.Errorf("bad source address: %v", err)
	}
	g.Deadline, err = time.Parse(time.RFC3339Nano, w.Deadline)
	if err != nil {
		return Grant{}, fmt.Errorf("bad deadline %q: want RFC 3339", w.Deadline)
	}
	g.Deadline = g.Deadline.UTC()
	if err := g.Validate(); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// members splits one JSON object into its members, refusing duplicates,
// unknown names, missing required ones and anything after the object.
func members(value []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]json.RawMessage, len(fields))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %v", err)
		}
		name, _ := t.(string)
		if _, known := fields[name]; !known {
			return nil, fmt.Errorf("unknown member %q", name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("member %q given twice", name)
		}
		var r json.RawMessage
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("member %q: bad JSON: %v", name, err)
		}
		out[name] = r
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("bad JSON: unterminated object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	for name, required := range fields {
		if _, ok := out[name]; required && !ok {
			return nil, fmt.Errorf("member %q missing", name)
		}
	}
	return out, nil
}

func str(r json.RawMessage, dst *string) error {
	if len(r) == 0 || r[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(r, dst)
}

func number(r json.RawMessage, dst *int) error {
	if len(r) == 0 || r[0] < '0' || r[0] > '9' {
		return errors.New("not a non-negative integer")
	}
	if err := json.Unmarshal(r, dst); err != nil {
		return errors.New("not a small integer")
	}
	return nil
}

// parsePort reads "22/tcp" exactly as Marshal writes it.
func parsePort(s string) (knock.Port, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return knock.Port{}, fmt.Errorf("bad port %q: want NUMBER/tcp or NUMBER/udp", s)
	}
	if len(num) == 0 || num[0] == '0' || len(num) > 5 {
		return knock.Port{}, fmt.Errorf("bad port %q", s)
	}
	n, err := knock.ParsePortNum(num)
	if err != nil {
		return knock.Port{}, err
	}
	p, _ := knock.ParseProto(proto)
	return knock.Port{Num: n, Proto: p}, nil
}
