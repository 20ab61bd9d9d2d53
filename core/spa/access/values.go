package access

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// addrs parses SOURCE or DESTINATION: ANY, or a comma-separated list of
// addresses and networks (CIDR, or fwknop's dotted IPv4 masks). It
// reports errors itself and returns nil on one.
func (p *parser) addrs(l line) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range strings.Split(l.val, ",") {
		e = strings.TrimSpace(e)
		if strings.EqualFold(e, "ANY") {
			out = append(out, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			continue
		}
		pfx, err := parseNet(e)
		if err != nil {
			p.errorf(l.file, l.n, "%s: %v", l.key, err)
			return nil
		}
		out = append(out, pfx)
	}
	return out
}

func parseNet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry")
	}
	addr, mask, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", addr)
	}
	a = a.Unmap()
	bits := a.BitLen()
	if hasMask {
		if m, err := netip.ParseAddr(mask); err == nil && m.Is4() && a.Is4() {
			if bits, err = maskBits(m); err != nil {
				return netip.Prefix{}, fmt.Errorf("%s: %v", s, err)
			}
		} else if n, err := strconv.Atoi(mask); err == nil && n >= 0 && n <= a.BitLen() && allDigits(mask) {
			bits = n
		} else {
			return netip.Prefix{}, fmt.Errorf("%s: bad mask %q", s, mask)
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// maskBits turns a dotted netmask into a prefix length; the mask must be
// contiguous.
func maskBits(m netip.Addr) (int, error) {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %s is not contiguous", m)
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parsePorts reads "tcp/22, udp/53".
func parsePorts(s string) ([]knock.Port, error) {
	var out []knock.Port
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		proto, num, ok := strings.Cut(e, "/")
		if !ok {
			return nil, fmt.Errorf("%q: want PROTO/PORT", e)
		}
		pr, err := knock.ParseProto(proto)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", e, err)
		}
		n, err := knock.ParsePortNum(strings.TrimSpace(num))
		if err != nil {
			return nil, err
		}
		out = append(out, knock.Port{Num: n, Proto: pr})
	}
	return out, nil
}

// yesNo reads fwknopd's booleans: Y... is yes, N... is no.
func yesNo(s string) (bool, error) {
	switch {
	case s[0] == 'Y' || s[0] == 'y':
		return true, nil
	case s[0] == 'N' || s[0] == 'n':
		return false, nil
	}
	return false, fmt.Errorf("%q: want Y or N", s)
}

// parseDate reads ACCESS_EXPIRE's MM/DD/YYYY (a two-digit year is 20YY,
// as fwknopd reads it): midnight local time starting that day.
func parseDate(s string, loc *time.Location) (time.Time, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
	}
	var n [3]int
	for i, p := range parts {
		if !allDigits(p) || len(p) > []int{2, 2, 4}[i] {
			return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
		}
		n[i], _ = strconv.Atoi(p)
	}
	mon, day, year := n[0], n[1], n[2]
	if year < 100 {
		year += 2000
	}
	if mon < 1 || mon > 12 || day < 1 || day > 31 {
		return time.Time{}, fmt.Errorf("want MM/DD/YYYY")
	}
	t := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, loc)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("no day %d in month %d", day, mon)
	}
	return t, nil
}
