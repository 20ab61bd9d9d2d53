package firewall

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestAllowKey(t *testing.T) {
	for _, tc := range []struct {
		key  entryKey
		want []byte
	}{
		{
			entryKey{netip.MustParseAddr("10.77.0.2"), knock.TCP, "2222"},
			[]byte{10, 77, 0, 2, 6, 0, 0, 0, 0x08, 0xae, 0, 0},
		},
		{
			entryKey{netip.MustParseAddr("fd77::2"), knock.UDP, "53"},
			[]byte{0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 17, 0, 0, 0, 0, 53, 0, 0},
		},
	} {
		got, err := allowKey(tc.key)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("allowKey(%v) = %v, %v; want %v", tc.key, got, err, tc.want)
			continue
		}
		back, err := parseAllowKey(got)
		if err != nil || back != tc.key {
			t.Errorf("parseAllowKey(%v) = %v, %v", got, back, err)
		}
	}
	if _, err := allowKey(entryKey{src4, knock.TCP, "22,23"}); err == nil {
		t.Error("a multi-port key should not encode")
	}
	for _, bad := range [][]byte{
		{1, 2, 3},
		{10, 0, 0, 1, 1, 0, 0, 0, 0, 22, 0, 0}, // icmp
		{10, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 0},  // port 0
	} {
		if k, err := parseAllowKey(bad); err == nil {
			t.Errorf("parseAllowKey(%v) = %v, accepted", bad, k)
		}
	}
}

func TestPortKey(t *testing.T) {
	for _, p := range []knock.Port{tcp(22), udp(65535)} {
		k := portKey(p)
		if len(k) != portKeyLen {
			t.Fatalf("len %d", len(k))
		}
		back, err := parsePortKey(k)
		if err != nil || back != p {
			t.Errorf("round trip %v: %v %v", p, back, err)
		}
	}
	if p, err := parsePortKey(holdKey); err == nil {
		t.Errorf("the rescue's hold marker parsed as port %v", p)
	}
}
