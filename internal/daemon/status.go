package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/control"
)

// statusService keeps systemd's STATUS= line current: at start, every
// 2 s, and after each reload.
func (d *daemon) statusService() hook {
	return periodic("status", func() time.Duration { return 2 * time.Second }, func(context.Context) { d.updateStatus() })
}

func (d *daemon) updateStatus() {
	st := d.Status()
	s := fmt.Sprintf("%d doors on %s; %d grants, %d attempts", len(st.Doors), d.caps.describe(), st.Grants, st.Attempts)
	if f := failingSummary(d.grants.List()); f != "" {
		s += "; " + f
	}
	if r := d.rescue.summary(); r != "" {
		s += "; " + r
	}
	if f := d.fleet.summary(); f != "" {
		s += "; " + f
	}
	if st.ConfigErr != "" {
		s += "; config error (running config kept): " + st.ConfigErr
	}
	if err := d.notify.Status(s); err != nil {
		d.log.Debug("status not sent", "error", err)
	}
}

// failingSummary says, for STATUS=, which grants' stops keep failing:
// what they opened stays open until an admin acts.
func failingSummary(gs []grant.Grant) string {
	var n int
	var first grant.Grant
	for _, g := range gs {
		if g.State == grant.StopFailing.String() {
			if n == 0 {
				first = g
			}
			n++
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("STOP FAILING for grant %s (%s, %s): %s; see sesame grants", first.ID, first.Door, first.Source, first.LastError)
	}
	return fmt.Sprintf("STOP FAILING for %d grants (first %s, %s, %s: %s); see sesame grants", n, first.ID, first.Door, first.Source, first.LastError)
}

// Status answers the control socket's status request.
func (d *daemon) Status() control.Status {
	d.mu.Lock()
	cfg, cfgErr := d.cfg, d.cfgErr
	d.mu.Unlock()
	gs := d.grants.List()
	st := control.Status{Version: d.opts.Version, Config: d.opts.ConfigPath, Interfaces: d.caps.ifaces,
		Grants: len(gs), ConfigErr: cfgErr, Fleet: d.fleet.status()}
	for _, g := range gs {
		if g.State == grant.StopFailing.String() {
			st.StopFailing++
		}
	}
	for _, dr := range cfg.Doors {
		st.Doors = append(st.Doors, dr.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if es, err := d.eng.Stats(ctx); err == nil {
		st.Attempts = es.Match.Attempts
	}
	return st
}
