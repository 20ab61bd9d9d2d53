package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// framer rewrites a frame template in place for each packet of a stream:
// the source address, the ports and the checksums change, nothing else.
// Building every frame with rawsend.Frame (gopacket serialisation, a few
// allocations) caps a sender at a few hundred thousand packets per
// second; patching a template costs tens of nanoseconds. The template
// comes from rawsend.Frame, so the bytes are the ones the tests of
// rawsend check.
type framer struct {
	tmpl  []byte
	v6    bool
	proto knock.Proto
	ip    int // offset of the IP header
	l4    int // offset of the TCP or UDP header
	l4len int // TCP or UDP header plus payload
}

// newFramer builds the template for spec (untagged Ethernet, no IPv6
// extension headers). spec's addresses fix the family and destination.
func newFramer(spec rawsend.Spec) (*framer, error) {
	if len(spec.VLANs) > 0 || spec.HopByHop || spec.FragOffset != 0 || spec.MoreFragments {
		return nil, fmt.Errorf("framer: only plain frames can be patched")
	}
	tmpl, err := rawsend.Frame(spec)
	if err != nil {
		return nil, err
	}
	f := &framer{tmpl: tmpl, v6: spec.DstIP.Is6(), proto: spec.Proto, ip: 14}
	if f.v6 {
		f.l4 = f.ip + 40
		f.l4len = int(binary.BigEndian.Uint16(tmpl[f.ip+4:]))
	} else {
		f.l4 = f.ip + int(tmpl[f.ip]&0x0f)*4
		f.l4len = int(binary.BigEndian.Uint16(tmpl[f.ip+2:])) - (f.l4 - f.ip)
	}
	return f, nil
}

// frame returns a fresh copy of the template, for patch to rewrite.
func (f *framer) frame() []byte { return append([]byte(nil), f.tmpl...) }

// patch rewrites buf (a copy of the template) for a packet from src
// (same family as the template) with the given ports, and fixes the
// checksums.
func (f *framer) patch(buf []byte, src netip.Addr, sport, dport uint16) {
	l4 := buf[f.l4:]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	var sum uint32
	if f.v6 {
		a := src.As16()
		copy(buf[f.ip+8:], a[:])
		sum = sumBytes(buf[f.ip+8:f.ip+40], 0) // source and destination
		sum += uint32(f.l4len) + uint32(f.proto)
	} else {
		a := src.As4()
		ip := buf[f.ip:f.l4]
		copy(ip[12:], a[:])
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^fold(sumBytes(ip, 0)))
		sum = sumBytes(ip[12:20], 0)
		sum += uint32(f.l4len) + uint32(f.proto)
	}
	ck := 16 // TCP checksum offset
	if f.proto == knock.UDP {
		ck = 6
	}
	l4[ck], l4[ck+1] = 0, 0
	c := ^fold(sumBytes(l4[:f.l4len], sum))
	if c == 0 && f.proto == knock.UDP {
		c = 0xffff // zero means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(l4[ck:], c)
}

// sumBytes adds b to an RFC 1071 running sum.
func sumBytes(b []byte, sum uint32) uint32 {
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
