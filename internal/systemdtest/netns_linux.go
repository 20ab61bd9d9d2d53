package systemdtest

import (
	"strconv"
	"testing"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// PeerNS returns a new network namespace joined to the system's by a veth
// pair, laid out like netnstest.NewPair with the system as the server:
// netnstest.ServerIf (ServerAddr4/6) inside the system, netnstest.ClientIf
// (ClientAddr4/6) in the returned namespace, both up. Traffic sent from the
// returned namespace to ServerAddr4/6 reaches units in the system. The
// namespace, and with it the pair, is deleted by netnstest's cleanup.
func (s *System) PeerNS(tb testing.TB) *netnstest.NS {
	tb.Helper()
	peer := netnstest.NewNS(tb, "peer")
	peer.MustRun("ip", "link", "add", netnstest.ClientIf, "type", "veth",
		"peer", "name", netnstest.ServerIf, "netns", strconv.Itoa(s.pid))
	peer.MustRun("ip", "addr", "add", netnstest.ClientAddr4.String()+"/24", "dev", netnstest.ClientIf)
	peer.MustRun("ip", "-6", "addr", "add", netnstest.ClientAddr6.String()+"/64", "dev", netnstest.ClientIf, "nodad")
	peer.MustRun("ip", "link", "set", netnstest.ClientIf, "up")
	for _, argv := range [][]string{
		{"ip", "addr", "add", netnstest.ServerAddr4.String() + "/24", "dev", netnstest.ServerIf},
		{"ip", "-6", "addr", "add", netnstest.ServerAddr6.String() + "/64", "dev", netnstest.ServerIf, "nodad"},
		{"ip", "link", "set", netnstest.ServerIf, "up"},
		{"ip", "link", "set", "lo", "up"},
	} {
		if _, err := s.Run(argv...); err != nil {
			tb.Fatal(err)
		}
	}
	return peer
}
