package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/capture"
	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netmon"
	"github.com/sesame-knock/sesame/internal/preflight"
	"github.com/sesame-knock/sesame/rescue"
)

// recordingFirewall is a firewall.Backend that records what it was asked
// and fails Setup on demand.
type recordingFirewall struct {
	mu      sync.Mutex
	setups  []string // guarded ports of each Setup
	grants  []string // source and ports of each Grant
	calls   []string // every call, in order
	failing error
	granted chan string // if not nil, receives each Grant's source
	noGuard bool        // does not own the drop of its ports (iptables)
}

func (f *recordingFirewall) Name() string { return "nftables" }

// GuardsPorts: as nftables, it drops the guarded ports (unless noGuard,
// as iptables).
func (f *recordingFirewall) GuardsPorts() bool { return !f.noGuard }
func (f *recordingFirewall) Setup(_ context.Context, guarded []knock.Port) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "setup "+knock.FormatSequence(guarded))
	if f.failing != nil {
		return f.failing
	}
	f.setups = append(f.setups, knock.FormatSequence(guarded))
	return nil
}
func (f *recordingFirewall) Grant(_ context.Context, g firewall.Grant, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants = append(f.grants, g.Src.String()+" "+knock.FormatSequence(g.Ports))
	f.calls = append(f.calls, "grant "+g.Src.String())
	if f.granted != nil {
		f.granted <- g.Src.String()
	}
	return nil
}
func (f *recordingFirewall) Revoke(_ context.Context, g firewall.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "revoke "+g.Src.String())
	return nil
}
func (f *recordingFirewall) List(context.Context) ([]firewall.Grant, error) { return nil, nil }
func (f *recordingFirewall) Teardown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "teardown")
	return nil
}

func (f *recordingFirewall) setupCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.setups)
}

func (f *recordingFirewall) grantCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.grants)
}

func (f *recordingFirewall) allCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *recordingFirewall) fail(err error) {
	f.mu.Lock()
	f.failing = err
	f.mu.Unlock()
}

// noRescue is the rescue side of a config without a rescue port: the
// Switch is off and only sweeps what an earlier config left.
type noRescue struct{}

func (noRescue) Name() string { return "" }
func (noRescue) Spec() ([]knock.Port, []netip.Prefix, time.Duration) {
	return nil, nil, 0
}
func (noRescue) State(context.Context) ([]string, bool, time.Duration, error) {
	return nil, false, 0, nil
}
func (noRescue) Held(context.Context) (bool, error)             { return false, nil }
func (noRescue) Install(context.Context) error                  { return nil }
func (noRescue) Refresh(context.Context) error                  { return nil }
func (noRescue) Open(context.Context) error                     { return nil }
func (noRescue) Close(context.Context) error                    { return nil }
func (noRescue) Remove(context.Context) error                   { return nil }
func (noRescue) RemoveOthers(context.Context) ([]string, error) { return nil, nil }

// fakeCapture is a capture handle: Run delivers what the test sends on
// packets until it is closed or its context ends.
type fakeCapture struct {
	packets chan knock.Packet
	dgrams  chan fakeDatagram
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	spec    capture.FilterSpec
}

func newFakeCapture(spec capture.FilterSpec) *fakeCapture {
	return &fakeCapture{packets: make(chan knock.Packet), dgrams: make(chan fakeDatagram), closed: make(chan struct{}), spec: spec}
}

// fakeDatagram is a UDP datagram with its payload, as the capture
// delivers one to a datagram port.
type fakeDatagram struct {
	p       knock.Packet
	payload []byte
}

func (c *fakeCapture) RunDeliver(ctx context.Context, d capture.Deliver, heartbeat func()) error {
	tick := time.NewTicker(capture.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.closed:
			return net.ErrClosed
		case p := <-c.packets:
			d.Knock(p)
		case dg := <-c.dgrams:
			if d.Datagram != nil {
				d.Datagram(dg.p, dg.payload)
			}
		case <-tick.C:
			heartbeat()
		}
	}
}

func (c *fakeCapture) SetFilter(spec capture.FilterSpec) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.mu.Lock()
	c.spec = spec
	c.mu.Unlock()
	return nil
}

func (c *fakeCapture) filter() capture.FilterSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spec
}

func (c *fakeCapture) Stats() capture.Stats { return capture.Stats{FilterExact: true} }
func (c *fakeCapture) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// fakeLinks is a link monitor that reports nothing until closed.
type fakeLinks struct {
	events chan netmon.Event
	once   sync.Once
}

func (l *fakeLinks) Events() <-chan netmon.Event { return l.events }
func (l *fakeLinks) Close() error {
	l.once.Do(func() { close(l.events) })
	return nil
}

// fakeDeps are deps that touch neither the kernel's firewall nor a
// network interface: captures are opened by open (fake ones), the
// firewall backend is fw (or newBackend's error), and no rescue port is
// configured.
func fakeDeps(fw *recordingFirewall, opened chan<- *fakeCapture) deps {
	return deps{
		now:    time.Now,
		listen: func(string) (net.Listener, error) { return nil, errors.New("no control socket in this test") },
		newBackend: func(firewall.Kind, hclog.Logger) (firewall.Backend, error) {
			if fw == nil {
				return nil, errors.New("iptables: executable file not found in $PATH")
			}
			return fw, nil
		},
		newRescueFW: func(firewall.Kind, firewall.RescueSpec, hclog.Logger) (rescue.Firewall, error) {
			return noRescue{}, nil
		},
		openCapture: func(iface string, spec capture.FilterSpec) (handle, error) {
			c := newFakeCapture(spec)
			select {
			case opened <- c:
			default: // a reopen the test does not wait for
			}
			return c, nil
		},
		newLinks: func(netmon.Options) (linkEvents, error) {
			return &fakeLinks{events: make(chan netmon.Event)}, nil
		},
		preflight: checkWithoutFirewall,
	}
}

// checkWithoutFirewall is preflight.Check on cfg without its Open and
// Rescue_Ports: the tests' firewall is a fake, and the host's, which the
// check would probe, is not the one they run against. Files, interfaces
// and the rest are checked as the daemon's start checks them.
func checkWithoutFirewall(ctx context.Context, cfg *config.Config, o preflight.Options) *preflight.Report {
	c := *cfg
	c.Options.RescuePorts = nil
	c.Doors = make([]*config.Door, len(cfg.Doors))
	for i, d := range cfg.Doors {
		dd := *d
		dd.Open = nil
		c.Doors[i] = &dd
	}
	return preflight.Check(ctx, &c, o)
}

// noCommands is a grant.Commands for doors without commands.
type noCommands struct{}

func (noCommands) Allow(string, time.Time) bool { return true }
func (noCommands) Run(context.Context, string, string, ...string) command.Result {
	return command.Result{}
}
func (noCommands) RunMarked(context.Context, string, string, string, ...string) command.Result {
	return command.Result{}
}
