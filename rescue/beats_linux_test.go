package rescue

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/firewall"
)

// The stand-in daemon refreshes the heartbeat every After/3, but on a
// loaded machine a refresh can come later than After after the one
// before, and then the kernel opens the rescue, as it must: a daemon that
// cannot refresh in time looks hung. So while a stand-in keeps the
// rescue, an open rescue is the product's fault only when the stand-in's
// own report (reportBeats) guarantees a heartbeat throughout the probe
// that saw it; otherwise the opening is logged and excused.

// beatSlack is what a heartbeat may fall short of After: ipset and
// nftables count timeouts in jiffies (ipset in whole seconds, rounded up
// by core/firewall), and the kernel commits a change a little after the
// call that made it starts.
const beatSlack = 100 * time.Millisecond

// nftLinger is how long, on nftables, a source the open rescue let in
// keeps its way past the grants backend's guard after its last packet
// (core/firewall's rescueAdmitTimeout, 500 ms, plus beatSlack): a rescue
// that was open stays open that long to the sources that used it after
// the heartbeat is back. iptables rescues admit with a plain ACCEPT.
const nftLinger = 500*time.Millisecond + beatSlack

// lingerOf is how long an opening outlasts the heartbeat that ends it,
// in kind's firewall family.
func lingerOf(kind firewall.Kind) time.Duration {
	if kind == firewall.NFTables {
		return nftLinger
	}
	return 0
}

// keptLimit bounds how long a check waits for a stand-in that keeps the
// rescue to show the state wanted. It is reached only when the stand-in
// stops refreshing, which fails the test.
const keptLimit = 30 * time.Second

// reportLimit bounds how long a check waits for the stand-in's report to
// show a heartbeat: five times After, where it reports one every After/3.
const reportLimit = 10 * time.Second

// beat is one heartbeat the stand-in set, on CLOCK_MONOTONIC: the kernel
// committed it between start and end, so it lasted at least until
// start + After - beatSlack.
type beat struct{ start, end time.Duration }

// rel is b relative to p, for a log line: "-1.250s..-1.230s".
func (b beat) rel(p time.Duration) string {
	return fmt.Sprintf("%+.3fs..%+.3fs", (b.start - p).Seconds(), (b.end - p).Seconds())
}

// observation is one state() probe, on CLOCK_MONOTONIC: the probes ran
// between p0 and p1.
type observation struct {
	got    string
	p0, p1 time.Duration
}

// observe probes the rescue ports once.
func (e *env) observe() observation {
	p0 := monotonic()
	got := e.state()
	return observation{got: got, p0: p0, p1: monotonic()}
}

// beats parses the heartbeats the stand-in reported so far, in order.
func (d *daemon) beats() []beat {
	d.t.Helper()
	var bs []beat
	for line := range strings.Lines(d.stderr.String()) {
		rest, ok := strings.CutPrefix(line, beatPrefix)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 {
			d.t.Fatalf("stand-in reported a heartbeat as %q", line)
		}
		var b beat
		for i, p := range []*time.Duration{&b.start, &b.end} {
			ns, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				d.t.Fatalf("stand-in reported a heartbeat as %q: %v", line, err)
			}
			*p = time.Duration(ns)
		}
		bs = append(bs, b)
	}
	return bs
}

// beatsUntil waits, up to reportLimit, until the stand-in's report
// satisfies done, and returns it (whether or not it does). The report
// lags the heartbeats a little: the stand-in writes each line after the
// call returned, through a pipe the test copies.
func (d *daemon) beatsUntil(done func([]beat) bool) []beat {
	d.t.Helper()
	deadline := time.Now().Add(reportLimit)
	for {
		bs := d.beats()
		if done(bs) || time.Now().After(deadline) {
			return bs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// beatsPast returns the report once it is complete up to p: once it holds
// a heartbeat that started after p, every heartbeat that ended before p
// is in it (they are reported in order).
func (d *daemon) beatsPast(p time.Duration) []beat {
	d.t.Helper()
	return d.beatsUntil(func(bs []beat) bool { return len(bs) > 0 && bs[len(bs)-1].start > p })
}

// cover returns a heartbeat that held the rescue closed throughout o, and
// for linger before it (what an earlier opening may outlast the heartbeat
// by): one committed by then (it ended before p0 - linger) and lasting past
// the probes' end (it started after p1 - after + beatSlack).
func cover(bs []beat, o observation, after, linger time.Duration) (beat, bool) {
	for _, b := range slices.Backward(bs) {
		if b.end < o.p0-linger && b.start > o.p1-after+beatSlack {
			return b, true
		}
	}
	return beat{}, false
}

// around describes the heartbeats near o, relative to the end of its
// probes, for a log line.
func around(bs []beat, o observation, after, linger time.Duration) string {
	var near []string
	for _, b := range bs {
		if b.end >= o.p0-2*after && b.start <= o.p1+after {
			near = append(near, b.rel(o.p1))
		}
	}
	if len(near) == 0 {
		near = []string{"none"}
	}
	return fmt.Sprintf("probes %+.3fs..0s; heartbeats set (start..end, relative to the probes' end; each lasts %s, an opening lingers %s): %s",
		(o.p0 - o.p1).Seconds(), after, linger, strings.Join(near, ", "))
}

// judgeKept judges o, made while the stand-in d was alive and
// refreshing, against want (the closed rescue, with a grant perhaps): it
// reports whether o is want. A port reachable beyond want and the rescue
// open to Rescue_From fails the test. When the rescue is open, the test
// fails if d's report guarantees a heartbeat throughout the probes, and
// the opening is logged otherwise (the stand-in was late). A port of want
// the probes did not reach is only asked again (see reaches).
func (e *env) judgeKept(d *daemon, want string, o observation, since time.Time) bool {
	e.t.Helper()
	if o.got == want {
		return true
	}
	if !subset(o.got, want+" "+rescueOpen()) {
		e.t.Fatalf("after %s: reachable %q, want %q", time.Since(since).Round(time.Millisecond), o.got, want)
	}
	if subset(o.got, want) {
		return false
	}
	bs := d.beatsPast(o.p1)
	if b, ok := cover(bs, o, d.after, d.linger); ok {
		e.t.Fatalf("after %s: reachable %q, want %q, though the heartbeat set %s held the rescue closed throughout (%s)",
			time.Since(since).Round(time.Millisecond), o.got, want, b.rel(o.p1), around(bs, o, d.after, d.linger))
	}
	e.t.Logf("after %s: reachable %q, want %q: excused, no heartbeat of the stand-in held the rescue closed throughout (%s)",
		time.Since(since).Round(time.Millisecond), o.got, want, around(bs, o, d.after, d.linger))
	return false
}

// waitKept probes until state() is want while the stand-in d keeps the
// rescue, and returns how long that took from start. Observations are
// judged by judgeKept; the test also fails when want is not seen within
// keptLimit, or when d reported no heartbeat set before the probes that
// saw it (nothing could have closed the rescue: its report is broken).
func (e *env) waitKept(d *daemon, want string, start time.Time) time.Duration {
	e.t.Helper()
	for {
		o := e.observe()
		if e.judgeKept(d, want, o, start) {
			took := time.Since(start)
			bs := d.beatsUntil(func(bs []beat) bool { return len(bs) > 0 })
			if len(bs) == 0 || bs[0].start > o.p1 {
				e.t.Fatalf("after %s: reachable %q, but the stand-in reported no heartbeat set before (%s)",
					took.Round(time.Millisecond), o.got, around(bs, o, d.after, d.linger))
			}
			return took
		}
		if time.Since(start) > keptLimit {
			e.t.Fatalf("after %s: reachable %q, want %q: the stand-in did not keep the rescue (%s)",
				time.Since(start).Round(time.Millisecond), o.got, want, around(d.beats(), o, d.after, d.linger))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdKept checks that state() stays want while the stand-in d keeps the
// rescue, for hold: it probes until it has seen want in probes that began
// hold after the first and that a heartbeat of d covered throughout, so
// that past After only the stand-in's refreshes can have kept it. Every
// observation is judged by judgeKept. If no such probe comes within
// keptLimit after hold, the stand-in did not refresh: the test fails.
func (e *env) holdKept(d *daemon, want string, hold time.Duration) {
	e.t.Helper()
	start, since := monotonic(), time.Now()
	for {
		o := e.observe()
		if e.judgeKept(d, want, o, since) && o.p0-start >= hold {
			if _, ok := cover(d.beats(), o, d.after, d.linger); ok {
				return
			}
		}
		if time.Since(since) > hold+keptLimit {
			e.t.Fatalf("after %s: no probe past %s saw %q while a heartbeat of the stand-in held the rescue closed: it did not refresh (%s)",
				time.Since(since).Round(time.Millisecond), hold, want, around(d.beats(), o, d.after, d.linger))
		}
	}
}

// waitLapse polls until the rescue is open to Rescue_From after the
// stand-in d stopped refreshing at start (it was killed and reaped, so
// its report is complete), and returns how long that took; it fails the
// test at start+within, and at any opening while a heartbeat d set held
// the rescue closed.
func (e *env) waitLapse(d *daemon, start time.Time, within time.Duration) time.Duration {
	e.t.Helper()
	bs := d.beats()
	for {
		o := e.observe()
		if o.got != "" {
			// No linger: the rescue was closed when d died, and an
			// opening since is one.
			if b, ok := cover(bs, o, d.after, 0); ok {
				e.t.Fatalf("after %s: reachable %q, though the heartbeat set %s held the rescue closed throughout (%s)",
					time.Since(start).Round(time.Millisecond), o.got, b.rel(o.p1), around(bs, o, d.after, 0))
			}
		}
		if o.got == rescueOpen() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			e.t.Fatalf("after %s: reachable %q, want %q", time.Since(start).Round(time.Millisecond), o.got, rescueOpen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCover: a heartbeat covers a probe only when it was committed before
// the probes began (and linger before that) and lasts past their end.
func TestCover(t *testing.T) {
	const after, linger = 2 * time.Second, 600 * time.Millisecond
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	o := observation{p0: ms(10_000), p1: ms(10_200)} // probes 10.0 s..10.2 s
	for _, c := range []struct {
		name   string
		bs     []beat
		linger time.Duration
		want   bool
	}{
		{"none", nil, 0, false},
		{"well inside", []beat{{ms(9_000), ms(9_010)}}, 0, true},
		{"ended during the probes", []beat{{ms(9_990), ms(10_001)}}, 0, false},
		{"started after the probes", []beat{{ms(10_300), ms(10_310)}}, 0, false},
		{"lapses before the probes end", []beat{{ms(8_200), ms(8_210)}}, 0, false},
		{"lapses within the slack", []beat{{ms(8_250), ms(8_260)}}, 0, false},
		{"lasts past the slack", []beat{{ms(8_350), ms(8_360)}}, 0, true},
		{"too late for the linger", []beat{{ms(9_500), ms(9_510)}}, linger, false},
		{"early enough for the linger", []beat{{ms(9_300), ms(9_390)}}, linger, true},
		{"one of several", []beat{{ms(7_000), ms(7_010)}, {ms(9_000), ms(9_010)}, {ms(10_100), ms(10_110)}}, 0, true},
		{"late ones only", []beat{{ms(7_000), ms(7_010)}, {ms(10_100), ms(10_110)}}, 0, false},
	} {
		if _, got := cover(c.bs, o, after, c.linger); got != c.want {
			t.Errorf("%s: covered %t, want %t", c.name, got, c.want)
		}
	}
}
