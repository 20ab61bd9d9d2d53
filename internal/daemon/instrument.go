package daemon

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/metrics"
)

// The grant manager's collaborators, measured on their way: the engine's
// opens (sesame_opens_total, and the start of a grant's latency), the
// door commands (sesame_command_duration_seconds) and the native grants
// (the end of a grant's latency). They change nothing of what they wrap.

// openCounter is what the engine opens doors through: the grant manager.
type openCounter struct {
	g   *grant.Manager
	m   *metrics.Metrics
	lat *metrics.Latency
}

// Open counts the open and, when it began a grant, notes when the
// grant's last step (its start command, else its native grant) ends.
func (o openCounter) Open(d *config.Door, src netip.Addr, now time.Time) grant.Outcome {
	out := o.g.Open(d, src, now)
	o.m.Opened(d.Name)
	if out == grant.Granted || out == grant.RanStart {
		src = src.Unmap()
		if start, _ := d.Commands(src.Is6()); start != "" {
			o.lat.Expect(commandKey(d.Name, command.Expand(start, src)), now)
		} else if len(d.Open) > 0 {
			o.lat.Expect(nativeKey(d.Name, src), now)
		}
	}
	return out
}

func commandKey(door, cmd string) string         { return "cmd\x00" + door + "\x00" + cmd }
func nativeKey(door string, a netip.Addr) string { return "fw\x00" + door + "\x00" + a.String() }

// stopMarker ends the markers of core/grant's stop commands (its marker
// files in StateDir/stops; a start's ends in .started): RunMarked's
// marker says which it runs. TestTimedCommandsKinds checks it against the
// real grant manager.
const stopMarker = ".stopped"

// timedCommands times the door commands the grant manager runs.
type timedCommands struct {
	grant.Commands
	m   *metrics.Metrics
	lat *metrics.Latency

	mu sync.Mutex // guards noMarker
	// noMarker holds the stops RunMarked could not mark: the grant
	// manager runs them unmarked next.
	noMarker map[string]bool
}

func (t *timedCommands) RunMarked(ctx context.Context, door, cmd, marker string, env ...string) command.Result {
	res := t.Commands.RunMarked(ctx, door, cmd, marker, env...)
	kind := metrics.CommandStart
	if strings.HasSuffix(marker, stopMarker) {
		kind = metrics.CommandStop
	}
	if errors.Is(res.Err, command.ErrNoMarker) {
		if kind == metrics.CommandStop {
			t.mu.Lock()
			t.noMarker[door+"\x00"+cmd] = true
			t.mu.Unlock()
		}
		return res
	}
	t.done(door, cmd, kind, res)
	return res
}

// Run runs a command without a marker: a knockd-style start command with
// nothing to undo, or a stop whose marker could not be written.
func (t *timedCommands) Run(ctx context.Context, door, cmd string, env ...string) command.Result {
	res := t.Commands.Run(ctx, door, cmd, env...)
	kind := metrics.CommandStart
	t.mu.Lock()
	if t.noMarker[door+"\x00"+cmd] {
		delete(t.noMarker, door+"\x00"+cmd)
		kind = metrics.CommandStop
	}
	t.mu.Unlock()
	t.done(door, cmd, kind, res)
	return res
}

func (t *timedCommands) done(door, cmd, kind string, res command.Result) {
	if res.ExitCode == -1 && res.Duration == 0 {
		return // never started
	}
	t.m.Command(door, kind, res.Duration)
	if kind == metrics.CommandStart {
		t.lat.Applied(commandKey(door, cmd), time.Now())
	}
}

// timedFirewall notes when a native grant is in the kernel.
type timedFirewall struct {
	grant.Firewall
	lat *metrics.Latency
}

func (f timedFirewall) Grant(ctx context.Context, g firewall.Grant, now time.Time) error {
	err := f.Firewall.Grant(ctx, g, now)
	if err == nil {
		f.lat.Applied(nativeKey(g.Door, g.Src), time.Now())
	}
	return err
}

// ExpiresInKernel passes on the backend's (grant.KernelExpiry): the
// grant manager applies a native grant beside its journal write only
// when the kernel ends it at its deadline.
func (f timedFirewall) ExpiresInKernel() bool {
	k, ok := f.Firewall.(grant.KernelExpiry)
	return ok && k.ExpiresInKernel()
}

// measuredFirewall wraps the grants' backend for the grant manager; nil
// stays nil.
func (d *daemon) measuredFirewall(b firewall.Backend) grant.Firewall {
	if b == nil {
		return nil
	}
	return timedFirewall{Firewall: b, lat: d.lat}
}

// metricsState is what a scrape reads (metrics.Source).
func (d *daemon) metricsState(ctx context.Context) metrics.State {
	d.mu.Lock()
	cfg, ok, at := d.cfg, d.cfgErr == "", d.reloadSt.InForce
	d.mu.Unlock()
	st := metrics.State{Doors: len(cfg.Doors), Interfaces: d.caps.counters(), ReloadOK: ok, ReloadSuccess: at,
		GrantsActive: make(map[string]int, len(cfg.Doors))}
	for _, dr := range cfg.Doors {
		st.GrantsActive[dr.Name] = 0
	}
	for _, g := range d.grants.List() {
		st.GrantsActive[g.Door]++
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if es, err := d.eng.Stats(ctx); err == nil {
		st.EngineOK, st.Attempts, st.Evicted = true, es.Match.Attempts, es.Match.Evictions
		st.QueueDrops = es.Dropped
	}
	st.RescueOpen = d.rescue.status().Open
	if fs := d.fleet.status(); fs != nil {
		st.Fleet = &metrics.Fleet{Connected: fs.Off == "" && fs.Connected, Revision: fs.Revision, Lag: fs.Lag, Unpublished: fs.Unpublished,
			Snapshots: fs.Snapshots, Refused: fs.Refused}
	}
	return st
}
