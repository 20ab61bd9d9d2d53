package grant

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/sesame-knock/sesame/core/command"
	"github.com/sesame-knock/sesame/core/journal"
	"github.com/sesame-knock/sesame/core/knock"
)

// MarkerDirName is the directory of the state directory that holds the
// markers of start and stop commands (Options.MarkerDir).
const MarkerDirName = "stops"

// Journaled returns the grants the journal in stateDir holds, in the
// vocabulary of Manager.List, for `sesame grants --state-dir` while the
// daemon is down. Outcomes: the grants, soonest deadline first; an I/O
// error (one wrapping fs.ErrNotExist when stateDir holds no journal).
func Journaled(stateDir string) ([]Grant, error) {
	recs, err := journal.ReadPending(stateDir)
	if err != nil {
		return nil, err
	}
	return FromJournal(recs, filepath.Join(stateDir, MarkerDirName), command.Marks{}), nil
}

// FromJournal names each journaled grant's state as the daemon would,
// from the record and its command markers in markerDir:
//   - its start command not journaled as finished: Starting;
//   - its revocation begun (a stop command ran or runs) and not recorded:
//     StopFailing with the exit status when the stop's marker shows it
//     failed, Unrecorded when it shows it succeeded (the journal did not
//     take the revocation), else Revoking;
//   - otherwise Active, also past its deadline (the next start revokes
//     it at once).
//
// Attempts is 0: the journal does not count a failing stop's tries.
func FromJournal(recs []journal.Record, markerDir string, marks Marks) []Grant {
	out := make([]Grant, 0, len(recs))
	for _, r := range recs {
		g := Grant{ID: r.ID, Door: r.Door, Source: r.Source, Open: r.Open, Ports: knock.FormatSequence(r.Open),
			StopCmd: r.StopCmd, Start: r.Start, Deadline: r.Deadline, State: Active.String(),
			Auth: r.Auth, User: r.User, Key: r.Key}
		switch {
		case r.StartPending:
			g.State = Starting.String()
		case r.RevokeStarted:
			g.State = Revoking.String()
			if markerDir == "" || marks == nil {
				break
			}
			switch m := marks.ReadMark(filepath.Join(markerDir, r.ID+stopSuffix)); {
			case m.OK():
				g.State = Unrecorded.String()
			case m.State == command.Done:
				g.State = StopFailing.String()
				g.LastError = fmt.Sprintf("stop command: exit status %d", m.Status)
			}
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Deadline.Before(out[j].Deadline) })
	return out
}
