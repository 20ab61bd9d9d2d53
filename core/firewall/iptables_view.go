package firewall

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The iptables backend's view of its chain and the commands that change
// it, built without running iptables. The backend keeps, per family, the
// Sesame rules it last wrote or read (the view); a Grant or Revoke plans
// against the view and runs the resulting commands as one iptables
// invocation: the command itself when there is one, else one
// iptables-restore --noflush script, which the kernel applies atomically.

// xtCmd is one iptables command without the binary, table and wait
// options: "-A SESAME -s ...". In a restore script it is one line.
type xtCmd []string

// chainState is what `iptables -S` (the whole filter table) shows of the
// grants' objects.
type chainState struct {
	chain   bool    // SESAME exists
	jumps   []int   // 1-based positions in INPUT of the jumps to SESAME
	entries []entry // Sesame's grant rules in SESAME, in chain order
}

// baseOK reports whether the chain exists and INPUT jumps to it: a rule
// appended to it then admits its source.
func (st chainState) baseOK() bool { return st.chain && len(st.jumps) > 0 }

// parseTable reads `iptables -S` of the filter table. Lines of other
// chains, and rules in SESAME that are not Sesame's grants, are skipped;
// a Sesame rule that cannot be read is reported through bad and skipped.
func parseTable(out string, bad func(line string, err error)) chainState {
	var st chainState
	var input []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case l == "-N "+ipChain:
			st.chain = true
		case strings.HasPrefix(l, "-A "+ipInput+" "):
			input = append(input, l)
		case strings.HasPrefix(l, "-A "+ipChain+" "):
			e, ok, err := parseRule(l)
			if err != nil {
				if bad != nil {
					bad(l, err)
				}
				continue
			}
			if ok {
				st.entries = append(st.entries, e)
			}
		}
	}
	st.jumps, _ = jumpPlace(input, ipChain)
	return st
}

// baseRepair returns the commands that make st's chain and jump whole:
// create the chain, insert a missing jump at position 1 of INPUT, delete
// duplicate jumps (`-D` removes the first, so one always stays). pos is
// where the one jump will be afterwards.
func baseRepair(st chainState) (cmds []xtCmd, pos int) {
	if !st.chain {
		cmds = append(cmds, xtCmd{"-N", ipChain})
	}
	switch n := len(st.jumps); {
	case n == 0:
		cmds = append(cmds, xtCmd{"-I", ipInput, "1", "-j", ipChain})
		pos = 1
	default:
		for range st.jumps[1:] {
			cmds = append(cmds, xtCmd{"-D", ipInput, "-j", ipChain})
		}
		pos = st.jumps[n-1] - (n - 1)
	}
	return cmds, pos
}

// ruleArgs is the rulespec that matches e's rule: what it was listed with,
// or what it was (or will be) added with.
func ruleArgs(e *entry, withTime bool) []string {
	if h, ok := e.handle.([]string); ok {
		return h
	}
	return ruleSpec(*e, withTime)
}

// planCommands turns a plan made against view (its Old entries point into
// view) into commands, in the plan's order (adds and replacements before
// deletions, each add before the delete it replaces), and returns the view
// the kernel holds once they have run. A replacement whose rule text does
// not change is neither added nor deleted.
func planCommands(view []entry, plan []change, withTime bool) (cmds []xtCmd, next []entry) {
	gone := make(map[*entry]bool)
	var added []entry
	for _, c := range plan {
		var newArgs []string
		if c.New != nil {
			newArgs = ruleSpec(*c.New, withTime)
		}
		if c.Old != nil && c.New != nil && slices.Equal(ruleArgs(c.Old, withTime), newArgs) {
			continue
		}
		if c.New != nil {
			cmds = append(cmds, append(xtCmd{"-A", ipChain}, newArgs...))
			e := *c.New
			e.handle = newArgs
			added = append(added, e)
		}
		if c.Old != nil {
			cmds = append(cmds, append(xtCmd{"-D", ipChain}, ruleArgs(c.Old, withTime)...))
			gone[c.Old] = true
		}
	}
	for i := range view {
		if !gone[&view[i]] {
			next = append(next, view[i])
		}
	}
	return cmds, append(next, added...)
}

var errUnquotable = errors.New("argument cannot be written in an iptables-restore script")

// restoreScript renders cmds as an iptables-restore script for the filter
// table: one transaction, applied entirely or not at all.
func restoreScript(cmds []xtCmd) ([]byte, error) {
	var b strings.Builder
	b.WriteString("*" + ipTable + "\n")
	for _, c := range cmds {
		for i, a := range c {
			q, err := quoteRestoreArg(a)
			if err != nil {
				return nil, fmt.Errorf("%w: %q", err, a)
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q)
		}
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String()), nil
}

// quoteRestoreArg quotes an argument as iptables-restore reads it (and as
// iptables -S prints it): plain when it is made of safe characters, else
// in double quotes with `"` and `\` escaped by a backslash. Line breaks
// and NUL cannot be written.
func quoteRestoreArg(a string) (string, error) {
	if strings.ContainsAny(a, "\n\r\x00") {
		return "", errUnquotable
	}
	if a != "" && strings.IndexFunc(a, func(r rune) bool { return !safeRestoreRune(r) }) < 0 {
		return a, nil
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`, nil
}

func safeRestoreRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-_./:,=+@%!", r)
}
