package config

import (
	"fmt"
	"strings"
)

// Key is a config key, whatever its spelling or alias; Options.Line and
// Door.KeyLine say where each was set, so that later checks (sesame
// check, the daemon's start) can name the line of a problem.
type Key uint8

const (
	keyNone Key = iota
	// [options]
	KeyUseSyslog
	KeyLogFile
	KeyPidFile
	KeyInterface
	KeyMaxAttempts
	KeyFirewall
	KeyReconcileInterval
	KeyRescuePorts
	KeyRescueAfter
	KeyRescueFrom
	KeyMetrics
	KeyMetricsFile
	KeySPAAccess
	KeySPAPort
	KeySPAMaxAge
	KeySPAAuthorizedKeys
	KeyFleetEndpoints
	KeyFleetGroup
	KeyFleetNode
	KeyFleetCA
	KeyFleetCert
	KeyFleetKey
	// doors
	KeyTarget
	KeySequence
	KeyOneTimeSequences
	KeySeqTimeout
	KeyStartCommand
	KeyStartCommand6
	KeyStopCommand
	KeyStopCommand6
	KeyCmdTimeout
	KeyTCPFlags
	KeyOpen
	KeyOpenTimeout
	KeyFleet
	numKeys
)

// Lines holds the line of the last assignment of each key (0: not set).
type Lines [numKeys]int32

// Of returns the line where k was last set, 0 when it was not.
func (l *Lines) Of(k Key) int {
	if k >= numKeys {
		return 0
	}
	return int(l[k])
}

func (l *Lines) set(k Key, line int) {
	if line > 1<<31-1 {
		line = 1<<31 - 1
	}
	l[k] = int32(line)
}

// keyInfo is a key's name as the shipped config spells it and whether
// it belongs in [options].
type keyInfo struct {
	name   string
	global bool
}

var keyInfos = [numKeys]keyInfo{
	KeyUseSyslog:         {"UseSyslog", true},
	KeyLogFile:           {"LogFile", true},
	KeyPidFile:           {"PidFile", true},
	KeyInterface:         {"Interface", true},
	KeyMaxAttempts:       {"MaxAttempts", true},
	KeyFirewall:          {"Firewall", true},
	KeyReconcileInterval: {"Reconcile_Interval", true},
	KeyRescuePorts:       {"Rescue_Ports", true},
	KeyRescueAfter:       {"Rescue_After", true},
	KeyRescueFrom:        {"Rescue_From", true},
	KeyMetrics:           {"Metrics", true},
	KeyMetricsFile:       {"Metrics_File", true},
	KeySPAAccess:         {"SPA_Access", true},
	KeySPAPort:           {"SPA_Port", true},
	KeySPAMaxAge:         {"SPA_Max_Age", true},
	KeySPAAuthorizedKeys: {"SPA_Authorized_Keys", true},
	KeyFleetEndpoints:    {"Fleet_Endpoints", true},
	KeyFleetGroup:        {"Fleet_Group", true},
	KeyFleetNode:         {"Fleet_Node", true},
	KeyFleetCA:           {"Fleet_CA", true},
	KeyFleetCert:         {"Fleet_Cert", true},
	KeyFleetKey:          {"Fleet_Key", true},
	KeyTarget:            {"target", false},
	KeySequence:          {"sequence", false},
	KeyOneTimeSequences:  {"one_time_sequences", false},
	KeySeqTimeout:        {"seq_timeout", false},
	KeyStartCommand:      {"start_command", false},
	KeyStartCommand6:     {"start_command_6", false},
	KeyStopCommand:       {"stop_command", false},
	KeyStopCommand6:      {"stop_command_6", false},
	KeyCmdTimeout:        {"cmd_timeout", false},
	KeyTCPFlags:          {"tcpflags", false},
	KeyOpen:              {"Open", false},
	KeyOpenTimeout:       {"Open_Timeout", false},
	KeyFleet:             {"Fleet", false},
}

// String is the key's name as the shipped config spells it.
func (k Key) String() string {
	if k == keyNone || k >= numKeys {
		return fmt.Sprintf("Key(%d)", int(k))
	}
	return keyInfos[k].name
}

// keySpellings maps every accepted spelling, upper-cased, to its key:
// knockd's aliases (timeout, command, command_6) included.
var keySpellings = func() map[string]Key {
	m := map[string]Key{"TIMEOUT": KeySeqTimeout, "COMMAND": KeyStartCommand, "COMMAND_6": KeyStartCommand6}
	for k := keyNone + 1; k < numKeys; k++ {
		m[strings.ToUpper(keyInfos[k].name)] = k
	}
	return m
}()

// aliasNames are the aliases as suggestions spell them.
var aliasNames = map[string]string{"TIMEOUT": "timeout", "COMMAND": "command", "COMMAND_6": "command_6"}

// suggest returns the spelling closest to key (as the user wrote it)
// among the keys valid in a door (or in [options]), or "" when none is
// close enough to be a likely misspelling.
func suggest(key string, global bool) string {
	up := strings.ToUpper(key)
	best, bestD := "", 0
	for spelling, k := range keySpellings {
		if keyInfos[k].global != global {
			continue
		}
		d := editDistance(squash(up), squash(spelling))
		// A distance of a third of the word is a typo; more is another word.
		if limit := (len(spelling) + 2) / 3; d > limit || d > 3 {
			continue
		}
		name := keyInfos[k].name
		if a, ok := aliasNames[spelling]; ok {
			name = a
		}
		if best == "" || d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

// squash drops the separators people leave out or double (SEQTIMEOUT,
// SEQ-TIMEOUT).
func squash(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
}

// editDistance is the optimal string alignment distance (Levenshtein
// with adjacent transpositions) between a and b, by bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Not a misspelt key: do not spend quadratic time on it.
		return 1 << 10
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// shown is a key as the user typed it, quoted only when it holds
// characters that would make the message hard to read.
func shown(key string) string {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", key)
		}
	}
	return key
}
