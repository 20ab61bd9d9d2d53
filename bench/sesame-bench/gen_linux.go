package main

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// genOptions drive the gen subcommand.
type genOptions struct {
	Iface    string
	DstMAC   net.HardwareAddr
	Dst      netip.Addr
	Mode     string
	Seq      []knock.Port
	Sources  []netip.Addr // modeKnock
	Spoof    netip.Prefix // other modes
	Avoid    []uint16     // extra ports noise never hits
	Flags    uint8        // TCP flags of TCP packets
	Rate     float64      // packets per second; 0 sends as fast as it can
	Count    uint64       // stop after this many (0: no limit but Duration)
	Duration time.Duration
	Batch    int // frames per sendmmsg
}

// genReport is what gen prints: what it was asked and what it did.
type genReport struct {
	Mode       string  `json:"mode"`
	Family     int     `json:"family"`
	TargetPPS  float64 `json:"target_pps"` // 0: as fast as possible
	Sent       uint64  `json:"sent"`
	Errors     uint64  `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PPS        float64 `json:"pps"` // achieved: Sent/Seconds
}

// generate sends o's stream until Count packets, Duration or ctx,
// whichever comes first.
func generate(ctx context.Context, o genOptions) (genReport, error) {
	fam := 4
	if o.Dst.Is6() {
		fam = 6
	}
	rep := genReport{Mode: o.Mode, Family: fam, TargetPPS: o.Rate}
	st, err := newStream(o.Mode, o.Seq, o.Sources, o.Spoof, o.Avoid)
	if err != nil {
		return rep, err
	}
	if n := st.count(); n > 0 && o.Count == 0 {
		o.Count = n // one pass of the real knockers' sequences unless told more
	}
	if o.Batch < 1 {
		o.Batch = 64
	}
	tx, err := rawsend.OpenBulk(o.Iface, o.Batch)
	if err != nil {
		return rep, err
	}
	defer tx.Close()
	// One template per protocol; a slot per batch entry, re-patched for
	// every packet, so the loop allocates nothing.
	framers := map[knock.Proto]*framer{}
	for _, proto := range []knock.Proto{knock.TCP, knock.UDP} {
		spec := rawsend.Spec{SrcMAC: tx.MAC(), DstMAC: o.DstMAC, SrcIP: o.Dst, DstIP: o.Dst, SrcPort: 1, DstPort: 1, Proto: proto}
		if proto == knock.TCP {
			spec.Flags = o.Flags
		} else {
			spec.Payload = []byte{0}
		}
		if framers[proto], err = newFramer(spec); err != nil {
			return rep, err
		}
	}
	slots := make([][]byte, o.Batch)
	for i := range slots {
		slots[i] = make([]byte, 0, 128)
	}
	batch := make([][]byte, 0, o.Batch)
	// A burst of about 5 ms of traffic: Go's timers wake with about a
	// millisecond of slack, and the bucket must hold what accrues meanwhile.
	burst := max(o.Batch, int(o.Rate/200))
	start := time.Now()
	end := start.Add(o.Duration)
	b := newBucket(o.Rate, burst, start)
	last := start
	var i uint64
	for ctx.Err() == nil {
		now := time.Now()
		if (o.Duration > 0 && !now.Before(end)) || (o.Count > 0 && i >= o.Count) {
			break
		}
		want := o.Batch
		if o.Count > 0 && o.Count-i < uint64(want) {
			want = int(o.Count - i)
		}
		n := b.take(now, want)
		if n == 0 {
			time.Sleep(b.wait(now))
			continue
		}
		batch = batch[:0]
		for j := 0; j < n; j++ {
			p := st.packet(i + uint64(j))
			f := framers[p.proto]
			buf := append(slots[j][:0], f.tmpl...)
			f.patch(buf, p.src, p.sport, p.dport)
			slots[j] = buf
			batch = append(batch, buf)
		}
		i += uint64(n)
		k, err := tx.SendBatch(batch)
		rep.Sent += uint64(k)
		if k < n {
			rep.Errors += uint64(n - k)
			if err != nil && rep.FirstError == "" {
				rep.FirstError = err.Error()
			}
		}
		last = time.Now()
	}
	rep.Seconds = last.Sub(start).Seconds()
	if rep.Seconds > 0 {
		rep.PPS = float64(rep.Sent) / rep.Seconds
	}
	return rep, nil
}
