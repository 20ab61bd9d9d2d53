package firewall

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestNewRescueSpec(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name    string
		spec    RescueSpec
		wantErr bool
		check   func(rescueSpec) bool
	}{
		{"sorted and deduplicated", RescueSpec{Ports: []knock.Port{udp(53), tcp(2222), tcp(22), tcp(22)}, After: time.Minute},
			false, func(s rescueSpec) bool { return knock.FormatSequence(s.ports) == "22:tcp,2222:tcp,53:udp" && s.anyFrom }},
		{"prefixes split, masked, unmapped", RescueSpec{Ports: []knock.Port{tcp(22)}, After: time.Minute,
			From: []netip.Prefix{pfx("2001:db8::1/32"), pfx("10.1.2.3/8"), pfx("::ffff:192.0.2.0/120")}},
			false, func(s rescueSpec) bool {
				return !s.anyFrom && slices.Equal(s.from4, []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.0/24")}) &&
					slices.Equal(s.from6, []netip.Prefix{pfx("2001:db8::/32")})
			}},
		{"port 0", RescueSpec{Ports: []knock.Port{tcp(0)}, After: time.Minute}, true, nil},
		{"icmp", RescueSpec{Ports: []knock.Port{{Num: 1, Proto: knock.Proto(1)}}, After: time.Minute}, true, nil},
		{"after too short", RescueSpec{Ports: []knock.Port{tcp(22)}, After: 999 * time.Millisecond}, true, nil},
		{"after too long for ipset", RescueSpec{Ports: []knock.Port{tcp(22)}, After: maxRescueAfter + time.Second}, true, nil},
		{"after rounds up for ipset", RescueSpec{Ports: []knock.Port{tcp(22)}, After: 2500 * time.Millisecond},
			false, func(s rescueSpec) bool { return s.seconds() == 3 }},
		{"invalid prefix", RescueSpec{Ports: []knock.Port{tcp(22)}, After: time.Minute, From: []netip.Prefix{{}}}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newRescueSpec(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %t", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidRescue) {
					t.Errorf("error %v does not wrap ErrInvalidRescue", err)
				}
				return
			}
			if !tc.check(s) {
				t.Errorf("spec %+v", s)
			}
		})
	}
}

// A Rescue without ports is off: no family, nothing detected, and every
// change refused rather than sent to a kernel.
func TestRescueOff(t *testing.T) {
	r, err := NewRescue(NFTables, RescueSpec{From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports, from, after := r.Spec()
	if r.Name() != "" || ports != nil || from != nil || after != 0 {
		t.Errorf("off rescue: name %q spec %v %v %s", r.Name(), ports, from, after)
	}
	ctx := context.Background()
	for name, op := range map[string]func(context.Context) error{
		"Install": r.Install, "Refresh": r.Refresh, "Open": r.Open, "Close": r.Close, "Remove": r.Remove,
	} {
		if err := op(ctx); !errors.Is(err, ErrNoRescuePorts) {
			t.Errorf("%s on an off rescue: %v, want ErrNoRescuePorts", name, err)
		}
	}
	if problems, held, left, err := r.State(ctx); problems != nil || held || left != 0 || err != nil {
		t.Errorf("State of an off rescue: %v %t %s %v", problems, held, left, err)
	}
}

// Spec hands back the normalized spec, IPv4 sources first.
func TestRescueSpecNormalized(t *testing.T) {
	pfx := netip.MustParsePrefix
	r, err := NewRescue(NFTables, RescueSpec{Ports: []knock.Port{tcp(2222), tcp(22)}, After: 30 * time.Second,
		From: []netip.Prefix{pfx("2001:db8::1/32"), pfx("10.1.2.3/8")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports, from, after := r.Spec()
	if knock.FormatSequence(ports) != "22:tcp,2222:tcp" || !slices.Equal(from, []netip.Prefix{pfx("10.0.0.0/8"), pfx("2001:db8::/32")}) ||
		after != 30*time.Second || r.Name() != "nftables" {
		t.Errorf("spec %v %v %s, name %q", ports, from, after, r.Name())
	}
}
