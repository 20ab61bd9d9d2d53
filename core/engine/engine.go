// Package engine is the matcher/executor component: one goroutine that
// owns the matcher, feeds it captured packets, logs each knock event in
// knockd's words, consumes one-time sequences and hands opened doors to
// the grant manager. Capture, reload and address changes talk to it only
// through its methods, which are safe from any goroutine.
package engine

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/event"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/loglimit"
	"github.com/sesame-knock/sesame/core/match"
	"github.com/sesame-knock/sesame/core/onetime"
)

// Grants is what the engine needs of the grant manager.
type Grants interface {
	Open(d *config.Door, src netip.Addr, now time.Time) grant.Outcome
}

// Stage and timeout log lines are limited to StageLogRate per second
// with bursts of StageLogBurst: well under journald's default limit, so
// the lines that matter (opens, grants, revocations) are never the ones
// journald drops. What was left out is summarised every SummaryEvery,
// as are the attempts a full attempt table evicted (one line at most
// every SummaryEvery says so at once).
const (
	StageLogRate  = 100
	StageLogBurst = 1000
	SummaryEvery  = 10 * time.Second
)

// Options configure an Engine.
type Options struct {
	Grants Grants
	Logger hclog.Logger
	// OnFilter is called, from the engine goroutine, with the knock
	// ports and door targets in force: once at start, and whenever they
	// change (a one-time sequence was used, a reload). The daemon builds
	// the capture filters from them.
	OnFilter func(ports []knock.Port, targets []netip.Addr)
	// Queue is how many packets may wait for the matcher (default 8192);
	// beyond that, packets are dropped and counted.
	Queue int
	// SkipIPv6 ignores IPv6 knocks (sesamed -4), IPv4-mapped sources
	// included: they came in IPv6 packets.
	SkipIPv6 bool
	// OpenLogEvery is how often OPEN SESAME lines held back are summarised
	// (default 10 s); see OpenLogBurst.
	OpenLogEvery time.Duration
	// Now is the engine's clock (default time.Now); the matcher sees the
	// time it returns when a packet is taken or a timer fires.
	Now func() time.Time
}

// An open that makes a new grant (or runs a start command) is always
// logged. Other opens (a holder's repeat knock, a door that opens
// nothing) log OpenLogBurst lines per door and one per second after
// that; the rest are counted into one line per door per OpenLogEvery.
// Opens the rate limit refused are not logged one by one: the grant
// manager summarises them.
const OpenLogBurst = 20

// Stats are the engine's counters.
type Stats struct {
	Match   match.Stats
	Dropped uint64 // packets dropped because the queue was full
	Opens   uint64
}

// Engine runs the matcher. Create with New, then Run.
type Engine struct {
	opts Options
	log  hclog.Logger
	in   chan knock.Packet
	ctl  chan func()

	dropped atomic.Uint64
	opens   atomic.Uint64

	trace bool // log every packet (sesamed -D)

	// Owned by the Run goroutine.
	cfg     *config.Config
	m       *match.Matcher
	oneTime map[int]*onetime.File // by door index
	timer   *time.Timer
	timerAt time.Time
	evicted uint64 // matcher evictions already counted in lines

	// lines limits stage and timeout lines (one key, stageKey): under a
	// spoofed flood every packet is a "Stage 1", and journald's own rate
	// limit (10000 per 30 s per service by default) would then drop
	// entries without regard to what they are, grants and revocations
	// included. evicts limits eviction warnings (key "MaxAttempts N").
	// openLog limits, per door, OPEN SESAME lines of opens that grant
	// nothing new; opens that grant are never limited.
	lines   *loglimit.Limiter
	evicts  *loglimit.Limiter
	openLog *loglimit.Limiter
}

// stageKey is the one key of stage and timeout lines.
const stageKey = "stage"

// New returns an Engine for cfg. It opens the doors' one-time files.
func New(cfg *config.Config, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Queue <= 0 {
		opts.Queue = 8192
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{opts: opts, log: opts.Logger, in: make(chan knock.Packet, opts.Queue), ctl: make(chan func()), trace: opts.Logger.IsTrace()}
	e.lines = loglimit.New(loglimit.Options{Rate: StageLogRate, Burst: StageLogBurst, Every: SummaryEvery,
		Report: func(_ string, n uint64, every time.Duration) {
			e.log.Warn(fmt.Sprintf("%d stage and timeout log lines suppressed in the last %v (more than %d per second: a flood?)", n, every, StageLogRate), "suppressed", n)
		}})
	e.evicts = loglimit.New(loglimit.Options{Rate: 1 / SummaryEvery.Seconds(), Burst: 1, Every: SummaryEvery,
		Report: func(table string, n uint64, every time.Duration) {
			e.log.Warn(fmt.Sprintf("attempt table full (%s): evicted %d more attempts in the last %v", table, n, every), "evicted", n)
		}})
	e.openLog = loglimit.New(loglimit.Options{Rate: 1, Burst: OpenLogBurst, Every: opts.OpenLogEvery,
		Report: func(door string, n uint64, every time.Duration) {
			e.log.Info(fmt.Sprintf("%s: %d more OPEN SESAME in the last %v (repeat knocks by holders, or a door that opens nothing; not logged one by one)", door, n, every),
				event.Event{Kind: event.Open, Door: door}.Args("suppressed", n)...)
		}})
	ot, err := openOneTime(cfg, nil, e.log)
	if err != nil {
		return nil, err
	}
	e.cfg, e.oneTime = cfg, ot
	e.m = match.New(matchDoors(cfg, ot), cfg.Options.MaxAttempts)
	return e, nil
}

// matchDoors converts config doors, taking one-time doors' sequences
// from their files.
func matchDoors(cfg *config.Config, ot map[int]*onetime.File) []match.Door {
	out := make([]match.Door, len(cfg.Doors))
	for i, d := range cfg.Doors {
		seq := d.Sequence
		if f := ot[i]; f != nil {
			seq = f.Current()
		}
		out[i] = match.Door{Name: d.Name, Sequence: seq, Timeout: d.SeqTimeout, Flags: d.Flags, Target: d.Target,
			Disabled: d.Disabled || len(seq) == 0}
	}
	return out
}

// openOneTime opens the one-time files of cfg's doors. Files already
// open in old (same path) are reused so their position is kept.
func openOneTime(cfg *config.Config, old map[int]*onetime.File, log hclog.Logger) (map[int]*onetime.File, error) {
	byPath := make(map[string]*onetime.File)
	for _, f := range old {
		byPath[f.Path()] = f
	}
	out := make(map[int]*onetime.File)
	for i, d := range cfg.Doors {
		if d.OneTimeFile == "" {
			continue
		}
		if f := byPath[d.OneTimeFile]; f != nil {
			out[i] = f
			delete(byPath, d.OneTimeFile)
			continue
		}
		f, err := onetime.Open(d.OneTimeFile)
		if err != nil && f == nil {
			for _, g := range out {
				g.Close()
			}
			return nil, fmt.Errorf("door %q: %w", d.Name, err)
		}
		for _, s := range f.Skipped {
			log.Warn("skipped unparsable one-time sequence " + s)
		}
		out[i] = f
	}
	return out, nil
}

// Submit queues a captured packet for the matcher. It never blocks: when
// the queue is full the packet is dropped and counted. Safe from any
// goroutine.
func (e *Engine) Submit(p knock.Packet) {
	select {
	case e.in <- p:
	default:
		e.dropped.Add(1)
	}
}

// do runs f on the engine goroutine and waits for it. It returns ctx's
// error, without running f, when ctx ends before the engine takes f; once
// taken, f runs at once and do waits for it to finish, so that a nil
// error always means f ran and an error that it did not.
func (e *Engine) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.ctl <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// SetLocal sets the addresses doors without a Target listen on.
func (e *Engine) SetLocal(ctx context.Context, addrs []netip.Addr) error {
	return e.do(ctx, func() { e.m.SetLocal(addrs) })
}

// SetHost sets the host's other addresses and its subnets' broadcast
// addresses: knocks from them never count (see match.Matcher.SetHost).
func (e *Engine) SetHost(ctx context.Context, addrs []netip.Addr) error {
	return e.do(ctx, func() { e.m.SetHost(addrs) })
}

// Prepared is a config that Prepare checked and made ready: its one-time
// files are open. Hand it to Commit, or to Discard when the reload is
// refused elsewhere.
type Prepared struct {
	cfg   *config.Config
	ot    map[int]*onetime.File
	fresh []*onetime.File // opened by Prepare: Discard closes them
}

// Prepare does everything of a reload to cfg that can fail, without
// changing what the engine runs: it opens the doors' one-time files
// (reusing the ones already open, so their position is kept). An error
// means the engine refuses cfg.
func (e *Engine) Prepare(ctx context.Context, cfg *config.Config) (*Prepared, error) {
	var p *Prepared
	var err error
	derr := e.do(ctx, func() {
		var ot map[int]*onetime.File
		ot, err = openOneTime(cfg, e.oneTime, e.log)
		if err != nil {
			return
		}
		p = &Prepared{cfg: cfg, ot: ot}
		old := openFiles(e.oneTime)
		for _, f := range ot {
			if !old[f] {
				p.fresh = append(p.fresh, f)
			}
		}
	})
	if derr != nil {
		return nil, derr
	}
	return p, err
}

// Commit swaps in a prepared config; it cannot fail. Attempts on doors
// whose name, sequence and target did not change are kept; grants are
// not affected. The one-time files the new config no longer uses are
// closed. A Prepared is committed at most once.
func (e *Engine) Commit(ctx context.Context, p *Prepared) error {
	return e.do(ctx, func() {
		keep := openFiles(p.ot)
		for _, f := range e.oneTime {
			if !keep[f] {
				f.Close()
			}
		}
		e.cfg, e.oneTime = p.cfg, p.ot
		// Sequences are read now, not at Prepare: a one-time door may
		// have moved on in between.
		e.m.SetDoors(matchDoors(p.cfg, p.ot))
		e.notifyFilter()
	})
}

// Discard releases what Prepare opened for a reload that was refused.
// The engine's running files are left alone: a reused file is never in
// fresh.
func (e *Engine) Discard(p *Prepared) {
	for _, f := range p.fresh {
		f.Close()
	}
}

// Reload swaps in cfg: Prepare, then Commit.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) error {
	p, err := e.Prepare(ctx, cfg)
	if err != nil {
		return err
	}
	return e.Commit(ctx, p)
}

func openFiles(m map[int]*onetime.File) map[*onetime.File]bool {
	out := make(map[*onetime.File]bool, len(m))
	for _, f := range m {
		out[f] = true
	}
	return out
}

// Stats returns counters, read on the engine goroutine.
func (e *Engine) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := e.do(ctx, func() { s.Match = e.m.Stats() })
	s.Dropped = e.dropped.Load()
	s.Opens = e.opens.Load()
	return s, err
}

// filterSpec returns the knock ports (TCP then UDP, each ascending) and
// door targets now in force. A port bitmap keeps it one pass over the
// doors' sequences: it runs at every reload and one-time rotation.
func (e *Engine) filterSpec() ([]knock.Port, []netip.Addr) {
	var seen [2][1 << 16]bool // [0] TCP, [1] UDP
	n := 0
	var targets []netip.Addr
	var seenTarget map[netip.Addr]bool
	for _, d := range e.m.Doors() {
		if d.Disabled {
			continue
		}
		for _, p := range d.Sequence {
			i := 0
			if p.Proto == knock.UDP {
				i = 1
			}
			if !seen[i][p.Num] {
				seen[i][p.Num] = true
				n++
			}
		}
		if d.Target.IsValid() && !seenTarget[d.Target] {
			if seenTarget == nil {
				seenTarget = map[netip.Addr]bool{}
			}
			seenTarget[d.Target] = true
			targets = append(targets, d.Target)
		}
	}
	ports := make([]knock.Port, 0, n)
	for i, proto := range []knock.Proto{knock.TCP, knock.UDP} {
		for num, ok := range seen[i] {
			if ok {
				ports = append(ports, knock.Port{Num: uint16(num), Proto: proto})
			}
		}
	}
	return ports, targets
}

func (e *Engine) notifyFilter() {
	if e.opts.OnFilter != nil {
		e.opts.OnFilter(e.filterSpec())
	}
}

// Close releases the one-time sequence files. Call it after the last Run
// has returned.
func (e *Engine) Close() {
	for _, f := range e.oneTime {
		f.Close()
	}
	e.lines.Close()
	e.evicts.Close()
	e.openLog.Close()
}

// Run owns the matcher until ctx ends; it may be called again after it
// returns (a supervisor restarting it), and the matcher's state carries
// over. heartbeat, if not nil, is called
// at least every interval while the loop is healthy.
func (e *Engine) Run(ctx context.Context, heartbeat func(), interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	beat := time.NewTicker(interval)
	defer beat.Stop()
	e.timer = time.NewTimer(time.Hour)
	e.timer.Stop()
	defer e.timer.Stop()
	e.notifyFilter()
	for {
		if heartbeat != nil {
			// Beat on every turn of the loop as well as on the ticker: a
			// loop that keeps turning is alive.
			heartbeat()
		}
		select {
		case <-ctx.Done():
			return nil
		case p := <-e.in:
			now := e.opts.Now()
			if e.trace {
				e.log.Trace("packet", "packet", p.String())
			}
			if e.opts.SkipIPv6 && p.Src.Is6() {
				continue
			}
			e.handle(e.m.Observe(p, now), now)
			// Drain what is queued without re-entering select for each.
			for n := 0; n < 256; n++ {
				select {
				case p := <-e.in:
					if e.opts.SkipIPv6 && p.Src.Is6() {
						continue
					}
					e.handle(e.m.Observe(p, now), now)
					continue
				default:
				}
				break
			}
			e.arm(now)
			e.noteEvictions(now)
		case <-e.timer.C:
			e.timerAt = time.Time{}
			now := e.opts.Now()
			e.handle(e.m.Expire(now), now)
			e.arm(now)
		case f := <-e.ctl:
			f()
			e.arm(e.opts.Now())
		case <-beat.C:
		}
	}
}

// noteEvictions warns that the attempt table is full: at once, then at
// most every SummaryEvery (a flood evicts thousands of attempts per
// second).
func (e *Engine) noteEvictions(now time.Time) {
	n := e.m.Stats().Evictions
	if n == e.evicted {
		return
	}
	table := fmt.Sprintf("MaxAttempts %d", e.cfg.Options.MaxAttempts)
	if e.evicts.AllowN(table, n-e.evicted, now) {
		e.log.Warn(fmt.Sprintf("attempt table full (%s): evicted %d attempts", table, n-e.evicted), "evicted", n-e.evicted)
	}
	e.evicted = n
}

// arm keeps the expiry timer at the matcher's next deadline, so
// timeouts are reported when they happen, not at the next packet.
func (e *Engine) arm(now time.Time) {
	dl, ok := e.m.NextDeadline()
	if !ok {
		return
	}
	if !e.timerAt.IsZero() && !dl.Before(e.timerAt) {
		return
	}
	e.timer.Stop()
	e.timer.Reset(max(dl.Sub(now), 0))
	e.timerAt = dl
}

func (e *Engine) handle(evs []match.Event, now time.Time) {
	for _, ev := range evs {
		d := e.cfg.Doors[ev.Door]
		src := ev.Src.String()
		switch ev.Kind {
		case match.Stage:
			if !e.lines.Allow(stageKey, now) {
				continue
			}
			e.log.Info(fmt.Sprintf("%s: %s: Stage %d", src, d.Name, ev.Stage), event.Event{Kind: event.Stage, Door: d.Name, Source: ev.Src}.Args(event.KeyStage, ev.Stage)...)
		case match.Open:
			e.opens.Add(1)
			switch out := e.opts.Grants.Open(d, ev.Src, now); {
			case out == grant.Granted || out == grant.RanStart,
				out != grant.RateLimited && e.openLog.Allow(d.Name, now):
				e.log.Info(fmt.Sprintf("%s: %s: OPEN SESAME", src, d.Name), event.Event{Kind: event.Open, Door: d.Name, Source: ev.Src}.Args("outcome", out.String())...)
			}
			e.useOneTime(ev.Door)
		case match.Timeout:
			if !e.lines.Allow(stageKey, now) {
				continue
			}
			e.log.Info(fmt.Sprintf("%s: %s: sequence timeout (stage %d)", src, d.Name, ev.Stage), event.Event{Kind: event.Timeout, Door: d.Name, Source: ev.Src}.Args(event.KeyStage, ev.Stage)...)
		case match.Reset:
			e.log.Debug(fmt.Sprintf("%s: %s: sequence reset (stage %d)", src, d.Name, ev.Stage), event.KeyDoor, d.Name, event.KeySource, src, event.KeyStage, ev.Stage)
		}
	}
}

// useOneTime moves a one-time door to its next sequence.
func (e *Engine) useOneTime(door int) {
	f := e.oneTime[door]
	if f == nil {
		return
	}
	d := e.cfg.Doors[door]
	err := f.Consume()
	for _, s := range f.Skipped {
		e.log.Warn("skipped unparsable one-time sequence " + s)
	}
	switch {
	case err == nil:
		e.log.Info(fmt.Sprintf("new sequence for door %s: %s", d.Name, knock.FormatSequence(f.Current())), event.KeyDoor, d.Name)
		e.m.SetSequence(door, f.Current())
	case err == onetime.ErrExhausted:
		e.log.Warn(fmt.Sprintf("no more sequences left in the one time sequences file for door %s --> disabling the door", d.Name), event.KeyDoor, d.Name)
		e.m.SetSequence(door, nil)
	default:
		// The used line could not be marked: disabling the door is the
		// only way to keep the sequence one-time.
		e.log.Error(fmt.Sprintf("error while disabling used one time sequence for door %s --> disabling the door: %v", d.Name, err), event.KeyDoor, d.Name)
		e.m.SetSequence(door, nil)
	}
	e.notifyFilter()
}
