package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/sesame-knock/sesame/core/knock"
)

// Set element keys of the nftables backend, encoded and decoded without
// netlink. A concatenated key puts each field in its own 32-bit register,
// zero-padded: an IPv4 address is 4 bytes, an IPv6 address 16, the
// protocol 1 byte padded to 4, the port 2 bytes (big endian) padded to 4.
// This is the layout the rule's register loads produce, so lookups match.

const (
	nftTable   = "sesame"
	nftAllow4  = "allow4"
	nftAllow6  = "allow6"
	nftGuarded = "guarded"
	nftInput   = "input"
	nftGuard   = "guard"

	// The rescue's sets and chains (rescue_nftables_rules_linux.go).
	nftRescuePorts  = "rescue_ports"
	nftRescueAlive  = "rescue_alive"
	nftRescueBase   = "rescue"
	nftRescueGate   = "rescue_gate"
	nftRescueAdmit  = "rescue_admit"
	nftRescueClosed = "rescue_closed"

	allow4KeyLen = 4 + 4 + 4
	allow6KeyLen = 16 + 4 + 4
	portKeyLen   = 4 + 4
)

func protoPortKey(p knock.Proto, port uint16) []byte {
	k := make([]byte, 8)
	k[0] = byte(p)
	binary.BigEndian.PutUint16(k[4:], port)
	return k
}

// allowKey is the key of a per-port entry (one port in k.Ports).
func allowKey(k entryKey) ([]byte, error) {
	port, err := knock.ParsePortNum(k.Ports)
	if err != nil {
		return nil, err
	}
	return append(k.Src.AsSlice(), protoPortKey(k.Proto, port)...), nil
}

// portKey is the key of the sets of protocol and port: guarded,
// rescue_ports and rescue_alive.
func portKey(p knock.Port) []byte { return protoPortKey(p.Proto, p.Num) }

// holdKey is the rescue's hold marker in rescue_alive: protocol 0, port 0,
// which no packet has.
var holdKey = make([]byte, portKeyLen)

// parseAllowKey reverses allowKey for a key of either allow set.
func parseAllowKey(b []byte) (entryKey, error) {
	var alen int
	switch len(b) {
	case allow4KeyLen:
		alen = 4
	case allow6KeyLen:
		alen = 16
	default:
		return entryKey{}, fmt.Errorf("allow key of %d bytes", len(b))
	}
	addr, _ := netip.AddrFromSlice(b[:alen])
	p, port, err := parseProtoPort(b[alen:])
	if err != nil {
		return entryKey{}, err
	}
	return entryKey{Src: addr, Proto: p, Ports: strconv.Itoa(int(port))}, nil
}

// parsePortKey reverses portKey; the hold marker is not a port.
func parsePortKey(b []byte) (knock.Port, error) {
	if len(b) != portKeyLen {
		return knock.Port{}, fmt.Errorf("port key of %d bytes", len(b))
	}
	p, port, err := parseProtoPort(b)
	return knock.Port{Num: port, Proto: p}, err
}

func parseProtoPort(b []byte) (knock.Proto, uint16, error) {
	p := knock.Proto(b[0])
	port := binary.BigEndian.Uint16(b[4:])
	if (p != knock.TCP && p != knock.UDP) || port == 0 {
		return 0, 0, fmt.Errorf("key proto %d port %d", b[0], port)
	}
	return p, port, nil
}
