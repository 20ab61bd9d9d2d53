package capture

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// The eBPF filter keeps datagrams to the SPA port, IPv4 and IPv6.
func TestEBPFFilterKeepsDatagrams(t *testing.T) {
	for _, link := range allLinks {
		tf := loadTestFilter(t, dgramSpec, link)
		for _, c := range []struct {
			name string
			f    []byte
			keep bool
		}{
			{"v4", frameFor(t, link, udp(cli4, srv4, 62201)), true},
			{"v6", frameFor(t, link, udp(cli6, srv6, 62201)), true},
			{"v6 two extension headers", chainFrame(t, link, udp(cli6, srv6, 62201), 2), true},
			{"v4 tcp", frameFor(t, link, syn(cli4, srv4, 62201)), false},
			{"v6 other port", frameFor(t, link, udp(cli6, srv6, 62202)), false},
			{"v4 other dst", frameFor(t, link, udp(cli4, oth4, 62201)), false},
		} {
			if got := tf.run(t, c.f); got != c.keep {
				t.Errorf("%s/%s: kept %v, want %v", link, c.name, got, c.keep)
			}
		}
	}
}

type datagram struct {
	p       knock.Packet
	payload string
}

// RunDeliver hands datagrams to the SPA port to Deliver.Datagram with
// their payloads, IPv4 and IPv6, with either kernel filter; knocks still
// go to Deliver.Knock, and a datagram port that is also a knock port
// reaches both.
func TestCaptureDeliversDatagrams(t *testing.T) {
	for _, kind := range filterKinds {
		t.Run(kind.String(), func(t *testing.T) {
			netnstest.RequireRoot(t)
			p := netnstest.NewPair(t)
			spec := FilterSpec{Dsts: []netip.Addr{s4, s6},
				Ports:     []knock.Port{{Num: 7000, Proto: knock.TCP}, {Num: 8000, Proto: knock.UDP}},
				Datagrams: []uint16{62201, 8000}}
			var h *Handle
			if err := p.Server.Do(func() (err error) { h, err = open(netnstest.ServerIf, spec, kind == FilterEBPF); return err }); err != nil {
				t.Fatal(err)
			}
			if st := h.Stats(); st.Filter != kind {
				h.Close()
				t.Fatalf("runs the %s filter, want %s", st.Filter, kind)
			}
			knocks := make(chan knock.Packet, 64)
			dgrams := make(chan datagram, 64)
			done := make(chan error, 1)
			go func() {
				done <- h.RunDeliver(context.Background(), Deliver{
					Knock:    func(p knock.Packet) { knocks <- p },
					Datagram: func(p knock.Packet, b []byte) { dgrams <- datagram{p, string(b)} },
				}, nil)
			}()
			defer func() {
				h.Close()
				if err := <-done; err != nil {
					t.Errorf("RunDeliver: %v", err)
				}
			}()
			waitUnfilteredRead(t, h)
			big := string(bytes.Repeat([]byte{'x'}, 1200))
			send := func(dst netip.Addr, port uint16, payload string) {
				t.Helper()
				if err := p.Client.Do(func() error {
					c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
					if err != nil {
						return err
					}
					defer c.Close()
					_, err = c.Write([]byte(payload))
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			send(s4, 62201, "spa over ipv4")
			send(s6, 62201, big)
			send(s4, 62202, "not the SPA port")
			send(s4, 8000, "both")
			var got []datagram
			for len(got) < 3 {
				select {
				case d := <-dgrams:
					got = append(got, d)
				case <-time.After(waitFor):
					t.Fatalf("datagrams delivered: %v", got)
				}
			}
			want := map[string]netip.Addr{"spa over ipv4": s4, big: s6, "both": s4}
			for _, d := range got {
				dst, ok := want[d.payload]
				if !ok || d.p.Dst != dst || d.p.Proto != knock.UDP || (d.p.Src != c4 && d.p.Src != c6) {
					t.Errorf("unexpected datagram %v (%d bytes)", d.p, len(d.payload))
				}
				delete(want, d.payload)
			}
			select {
			case k := <-knocks:
				if k.Port != 8000 || k.Dst != s4 {
					t.Errorf("knock %v, want the one to 8000", k)
				}
			case <-time.After(waitFor):
				t.Fatal("the datagram to 8000 (a knock port too) was not delivered as a knock")
			}
			if st := h.Stats(); st.Datagrams != 3 {
				t.Errorf("Stats().Datagrams = %d, want 3", st.Datagrams)
			}
		})
	}
}
