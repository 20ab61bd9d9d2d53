package capture

import (
	"errors"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// setOptmem sets net.core.optmem_max inside ns, the memory a socket's
// filter must fit in once the kernel has translated it. The sysctl is
// per network namespace since Linux 6.9; before, it exists in the initial
// namespace only, and the test cannot run without touching the host.
func setOptmem(t *testing.T, ns *netnstest.NS, bytes int) {
	t.Helper()
	out, err := ns.Run("cat", "/proc/sys/net/core/optmem_max")
	if err != nil {
		t.Skipf("net.core.optmem_max is not per network namespace on this kernel (before 6.9): %v", err)
	}
	if _, err := strconv.Atoi(strings.TrimSpace(out)); err != nil {
		t.Fatalf("optmem_max in %s: %q", ns.Name, out)
	}
	ns.MustRun("sh", "-c", "echo "+strconv.Itoa(bytes)+" > /proc/sys/net/core/optmem_max")
}

// TestCaptureFallsBackToACoarserFilter: the classic filter (what runs
// where the kernel refuses the eBPF one) degrades to coarser programs
// when the kernel refuses the exact one.
func TestCaptureFallsBackToACoarserFilter(t *testing.T) {
	netnstest.RequireRoot(t)
	p := netnstest.NewPair(t)
	// Room for a few hundred classic instructions, not 4096: Debian 12's
	// kernel has 20 KiB by default, and translation makes a program
	// bigger.
	setOptmem(t, p.Server, 8192)
	rng := rand.New(rand.NewSource(scaleSeed(t)))
	spec := scaleSpec(scaleCases[1], rng)
	spec.Dsts = append(spec.Dsts, s4)
	spec.Ports = append(spec.Ports, knock.Port{Num: 7000, Proto: knock.TCP})
	c := startCaptureKind(t, p.Server, netnstest.ServerIf, spec, FilterClassic)
	st := c.h.Stats()
	t.Logf("attached %d instructions, exact %v", st.FilterInstructions, st.FilterExact)
	if st.FilterExact || st.FilterInstructions >= MaxInstructions-100 || st.FilterInstructions == 0 {
		t.Fatalf("filter %d instructions, exact %v: want a coarser one than %d", st.FilterInstructions, st.FilterExact, MaxInstructions)
	}
	waitUnfilteredRead(t, c.h)
	dialTCP(t, p.Client, s4, 7000)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 7000)}, func() { sendUDP(t, p.Client, s4, sentinel) })

	// SetFilter falls back the same way.
	spec.Ports = append(spec.Ports, knock.Port{Num: 7001, Proto: knock.TCP}, knock.Port{Num: sentinel, Proto: knock.UDP})
	if err := c.h.SetFilter(spec); err != nil {
		t.Fatalf("SetFilter: %v", err)
	}
	dialTCP(t, p.Client, s4, 7001)
	c.expect(t, []knock.Packet{tcpKnock(c4, s4, 7001)}, func() { sendUDP(t, p.Client, s4, sentinel) })

	// With no room even for the coarsest program, Open says so.
	setOptmem(t, p.Server, 64)
	err := p.Server.Do(func() error {
		h, err := Open(netnstest.ServerIf, spec)
		if err == nil {
			h.Close()
		}
		return err
	})
	if !errors.Is(err, ErrFilterAttach) {
		t.Fatalf("Open with no option memory: %v, want ErrFilterAttach", err)
	}
	t.Log(err)
}
