// Package knock holds the small value types every stage of Sesame's data
// path shares: a protocol, a port on a protocol, TCP flags, and a decoded
// knock packet. It has no behaviour beyond parsing and printing them, so
// that the parser, the capture worker, the matcher and the firewall can
// agree on types without importing each other.
package knock

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is an IP protocol number; only TCP and UDP are knockable.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProto accepts "tcp" or "udp" in any case, as knockd's config does.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp or udp)", s)
}

// Port is a destination port on a protocol: one element of a knock
// sequence, or one port a native grant opens.
type Port struct {
	Num   uint16
	Proto Proto
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + ":" + p.Proto.String() }

// ParsePortNum parses a port number in 1..65535. knockd turns "abc" into
// port 0; Sesame rejects it.
func ParsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad port %q: not a number", s)
	}
	if n == 0 || n > 65535 {
		return 0, fmt.Errorf("bad port %q: out of range 1-65535", s)
	}
	return uint16(n), nil
}

// TCP header flag bits, as they sit in the 14th byte of the header.
const (
	FIN uint8 = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
)

// FlagNames maps knockd's tcpflags words to bits.
var FlagNames = map[string]uint8{
	"fin": FIN, "syn": SYN, "rst": RST, "psh": PSH, "ack": ACK, "urg": URG,
}

// FlagMask is knockd's tcpflags rule: every bit in Set must be set, every
// bit in Clear must be clear, other bits are ignored (so "syn" matches
// SYN+ACK).
type FlagMask struct {
	Set, Clear uint8
}

// Match reports whether TCP flags f satisfy the mask.
func (m FlagMask) Match(f uint8) bool {
	return f&m.Set == m.Set && f&m.Clear == 0
}

// IsZero reports whether the mask accepts every packet.
func (m FlagMask) IsZero() bool { return m.Set == 0 && m.Clear == 0 }

func (m FlagMask) String() string {
	var parts []string
	for _, name := range []string{"fin", "syn", "rst", "psh", "ack", "urg"} {
		b := FlagNames[name]
		switch {
		case m.Set&b != 0:
			parts = append(parts, name)
		case m.Clear&b != 0:
			parts = append(parts, "!"+name)
		}
	}
	return strings.Join(parts, ",")
}

// Packet is one decoded candidate knock. Its addresses are values, not
// views into a capture buffer, so it may outlive the frame it came from.
type Packet struct {
	Src, Dst netip.Addr
	Port     uint16 // destination port
	Proto    Proto
	Flags    uint8 // TCP flags; zero for UDP
}

func (p Packet) String() string {
	return fmt.Sprintf("%s -> %s %d/%s flags=%#x", p.Src, p.Dst, p.Port, p.Proto, p.Flags)
}

// ParseSequence parses knockd's sequence syntax, "port[:proto],...",
// with tcp as the default protocol. Elements are trimmed; an empty
// element is an error (knockd would knock on port 0).
func ParseSequence(s string) ([]Port, error) {
	return parseList(s, ':')
}

// ParsePortList parses Sesame's port lists ("22/tcp,443/tcp,53/udp");
// ":" is accepted too, so a sequence-style list also works.
func ParsePortList(s string) ([]Port, error) {
	return parseList(s, '/', ':')
}

func parseList(s string, seps ...byte) ([]Port, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty list")
	}
	elems := strings.Split(s, ",")
	out := make([]Port, 0, len(elems))
	for i, e := range elems {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("element %d is empty", i+1)
		}
		num, proto := e, "tcp"
		if j := strings.IndexAny(e, string(seps)); j >= 0 {
			num, proto = strings.TrimSpace(e[:j]), strings.TrimSpace(e[j+1:])
		}
		n, err := ParsePortNum(num)
		if err != nil {
			return nil, err
		}
		p, err := ParseProto(proto)
		if err != nil {
			return nil, err
		}
		out = append(out, Port{Num: n, Proto: p})
	}
	return out, nil
}

// FormatSequence prints ports the way knockd's config writes them.
func FormatSequence(ps []Port) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}
