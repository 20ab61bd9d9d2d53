package rawsend

import (
	"net"
	"testing"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// ForPair opens a Sender on p's client veth and returns it with the MAC
// of the server's veth, the destination frames need; the Sender is
// closed when the test ends.
func ForPair(tb testing.TB, p *netnstest.Pair) (*Sender, net.HardwareAddr) {
	tb.Helper()
	var mac net.HardwareAddr
	if err := p.Server.Do(func() error {
		ifi, err := net.InterfaceByName(netnstest.ServerIf)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	var s *Sender
	if err := p.Client.Do(func() (err error) {
		s, err = Open(netnstest.ClientIf)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, mac
}
