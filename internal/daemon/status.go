package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/internal/control"
)

// statusService keeps systemd's STATUS= line current: at start, every
// 2 s, and after each reload.
func (d *daemon) statusService() hook {
	return periodic("status", func() time.Duration { return 2 * time.Second }, func(context.Context) { d.updateStatus() })
}

func (d *daemon) updateStatus() {
	st := d.Status()
	s := fmt.Sprintf("%d doors on %s; %d grants, %d attempts", len(d.config().Doors), d.caps.describe(), st.Grants, st.Attempts)
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

// repairNote is the reconcile loop's last repair, for sesame status.
type repairNote struct {
	at    time.Time
	what  string
	count uint64
}

// noteRepair counts what a reconcile pass repaired.
func (d *daemon) noteRepair(rep firewall.Report) {
	n := len(rep.Restored) + len(rep.Removed)
	var what []string
	if rep.Recreated {
		n++
		what = append(what, "recreated Sesame's firewall objects")
	}
	if len(rep.Restored) > 0 {
		what = append(what, fmt.Sprintf("restored %d grants", len(rep.Restored)))
	}
	if len(rep.Removed) > 0 {
		what = append(what, fmt.Sprintf("removed %d stale grants", len(rep.Removed)))
	}
	if n == 0 {
		return
	}
	d.metrics.Repaired(n)
	d.mu.Lock()
	d.repair = repairNote{at: d.deps.now(), what: strings.Join(what, ", "), count: d.repair.count + uint64(n)}
	d.mu.Unlock()
}

// Status answers the control socket's status request: what sesame
// status prints, with the daemon's verdict on its health.
func (d *daemon) Status() control.Status {
	now := d.deps.now()
	d.mu.Lock()
	cfg, cfgErr, rl, rep := d.cfg, d.cfgErr, d.reloadSt, d.repair
	d.mu.Unlock()
	gs := d.grants.List()
	st := control.Status{Version: d.opts.Version, Started: d.started, Config: d.opts.ConfigPath, Reload: rl,
		ConfigErr: cfgErr, Interfaces: d.caps.status(), Grants: len(gs), Metrics: d.ms.status(), Fleet: d.fleet.status()}
	byDoor := map[string]int{}
	for _, g := range gs {
		byDoor[g.Door]++
		if g.State == grant.StopFailing.String() {
			st.StopFailing++
		}
	}
	inConfig := map[string]bool{}
	for _, dr := range cfg.Doors {
		kind := "sequence"
		if dr.OneTimeFile != "" {
			kind = "one-time"
		}
		inConfig[dr.Name] = true
		st.Doors = append(st.Doors, control.DoorStatus{Name: dr.Name, Kind: kind, Disabled: dr.Disabled, Grants: byDoor[dr.Name]})
	}
	// SPA's doors: one per access.conf stanza (its grants are named
	// spa#N) and one for the SSH keys (ssh), when the files are in force.
	if f := d.spa.files(); f != nil {
		if f.access != nil {
			for _, sz := range f.access.Stanzas {
				inConfig[sz.Name()] = true
				st.Doors = append(st.Doors, control.DoorStatus{Name: sz.Name(), Kind: "spa", Grants: byDoor[sz.Name()]})
			}
		}
		if f.keys != nil {
			inConfig[sshGrantName] = true
			st.Doors = append(st.Doors, control.DoorStatus{Name: sshGrantName, Kind: "spa", Grants: byDoor[sshGrantName]})
		}
	}
	var others []string
	for door := range byDoor {
		if !inConfig[door] {
			others = append(others, door)
		}
	}
	sort.Strings(others)
	for _, door := range others {
		st.Doors = append(st.Doors, control.DoorStatus{Name: door, Grants: byDoor[door]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	es, engErr := d.eng.Stats(ctx)
	st.Attempts = es.Match.Attempts
	rs := d.rescue.status()
	st.Rescue = control.RescueStatus{Configured: rs.Configured, Open: rs.Open, Held: rs.Held, Installed: rs.Installed, Summary: rs.String()}
	if b := d.fw.backend(); b != nil {
		st.Firewall.Backend = b.Name()
	}
	st.Firewall.LastRepair, st.Firewall.Repair, st.Firewall.Repairs = rep.at, rep.what, rep.count
	st.Journal.Path = filepath.Join(d.opts.StateDir, journal.LogName)
	if fi, err := os.Stat(st.Journal.Path); err == nil {
		st.Journal.Bytes = fi.Size()
	}

	// The verdict: what keeps doors from working or leaves something
	// open, and a config file that is not the one in force.
	var problems []string
	if !rl.OK || cfgErr != "" {
		why := cfgErr
		if why == "" {
			why = rl.Error
		}
		problems = append(problems, "last reload failed, the previous config keeps running: "+why)
	}
	if d.sup != nil {
		if ok, stale := d.health().Healthy(now); !ok {
			problems = append(problems, "unhealthy: "+strings.Join(stale, "; "))
		}
	}
	if engErr != nil {
		problems = append(problems, "the matcher does not answer: "+engErr.Error())
	}
	for _, i := range st.Interfaces {
		if i.State != "capturing" {
			problems = append(problems, fmt.Sprintf("interface %s is not capturing (%s): %s", i.Name, i.State, i.Why))
		}
	}
	if st.StopFailing > 0 {
		problems = append(problems, fmt.Sprintf("%d grants whose stop keeps failing: what they opened stays open (see sesame grants)", st.StopFailing))
	}
	if rs.Configured && (rs.Open || !rs.Installed) {
		problems = append(problems, rs.String())
	}
	if st.Metrics.Error != "" {
		problems = append(problems, "metrics: "+st.Metrics.Error)
	}
	// A fleet that does not run or reach etcd: local doors work, but
	// the group's grants do not arrive and this host's are not shared.
	if fs := st.Fleet; fs != nil {
		switch {
		case fs.Off != "":
			problems = append(problems, "fleet "+fs.Group+" is off: "+fs.Off)
		case !fs.Connected:
			problems = append(problems, fmt.Sprintf("fleet %s: etcd not reached (local doors work; %d grants made here wait to be shared): %s",
				fs.Group, fs.Unpublished, fs.Error))
		}
	}
	st.Problems, st.Healthy = problems, len(problems) == 0
	return st
}
