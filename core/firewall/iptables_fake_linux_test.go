package firewall

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/knock"
)

// A fake iptables for the backend's decisions that a kernel seldom
// provokes (a restore that fails after a fresh listing, an unreadable
// generation, a kernel without the time match), without root. It keeps
// the filter table's INPUT and SESAME rules as argument lists, answers the
// commands and restore scripts the backend sends as iptables 1.8 does
// (same exit statuses and messages), and counts nf_tables generations.
type fakeXtables struct {
	mu     sync.Mutex
	chain  bool
	input  [][]string // INPUT's rules, without "-A INPUT"
	rules  [][]string // SESAME's rules, without "-A SESAME"
	gen    uint32
	genErr error // what reading the generation returns, when set
	noTime bool  // refuse the time match
	// fail, when set, is asked before each run; an error it returns is
	// the run's result and nothing changes.
	fail  func(argv []string, stdin string) error
	calls []xtCall
	reads int // generation reads
}

func xtFail(argv []string, status int, msg string) error {
	return &xtError{Argv: argv, Status: status, Stderr: msg, err: fmt.Errorf("exit status %d", status)}
}

func (k *fakeXtables) readGen() (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	return k.gen, k.genErr
}

func (k *fakeXtables) run(_ context.Context, argv []string, stdin []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, xtCall{argv: slices.Clone(argv), stdin: string(stdin)})
	if k.fail != nil {
		if err := k.fail(argv, string(stdin)); err != nil {
			return nil, err
		}
	}
	if strings.HasSuffix(argv[0], "-restore") {
		return nil, k.restoreLocked(argv, string(stdin))
	}
	args := argv[1:]
	for len(args) > 1 && (args[0] == "-w" || args[0] == "-t") {
		args = args[2:]
	}
	switch {
	case slices.Equal(args, []string{"-V"}):
		return []byte("iptables v1.8.9 (nf_tables)\n"), nil
	case slices.Equal(args, []string{"-S"}):
		return []byte(k.listLocked()), nil
	}
	next, err := k.applyLocked(k.state(), args)
	if err != nil {
		return nil, xtFail(argv, err.(*fakeErr).status, err.Error())
	}
	k.set(next)
	k.gen++
	return nil, nil
}

type fakeState struct {
	chain        bool
	input, rules [][]string
}

type fakeErr struct {
	status int
	msg    string
}

func (e *fakeErr) Error() string { return e.msg }

func (k *fakeXtables) state() fakeState {
	return fakeState{k.chain, slices.Clone(k.input), slices.Clone(k.rules)}
}

func (k *fakeXtables) set(s fakeState) { k.chain, k.input, k.rules = s.chain, s.input, s.rules }

// restoreLocked applies a script in one transaction, as iptables-restore
// --noflush does: all of it, or nothing and "line N failed".
func (k *fakeXtables) restoreLocked(argv []string, script string) error {
	s := k.state()
	for i, line := range strings.Split(strings.TrimSuffix(script, "\n"), "\n") {
		if line == "*filter" || line == "COMMIT" {
			continue
		}
		args, err := splitRuleArgs(line)
		if err == nil {
			s, err = k.applyLocked(s, args)
		}
		if err != nil {
			return xtFail(argv, 1, fmt.Sprintf("%s\niptables-restore: line %d failed", err, i+1))
		}
	}
	k.set(s)
	k.gen++
	return nil
}

var (
	errFakeNoRule  = &fakeErr{1, "iptables: Bad rule (does a matching rule exist in that chain?)."}
	errFakeNoChain = &fakeErr{1, "iptables: No chain/target/match by that name."}
	errFakeExists  = &fakeErr{1, "iptables: Chain already exists."}
	errFakeNoTime  = &fakeErr{2, "iptables v1.8.9 (nf_tables): Couldn't load match `time':No such file or directory"}
)

func (k *fakeXtables) applyLocked(s fakeState, args []string) (fakeState, error) {
	if len(args) < 2 {
		return s, &fakeErr{2, fmt.Sprintf("fake iptables: cannot run %q", args)}
	}
	del := func(rules [][]string, spec []string) ([][]string, error) {
		i := slices.IndexFunc(rules, func(r []string) bool { return slices.Equal(r, spec) })
		if i < 0 {
			return rules, errFakeNoRule
		}
		return slices.Delete(rules, i, i+1), nil
	}
	var err error
	switch cmd, chain, spec := args[0], args[1], args[2:]; {
	case cmd == "-N" && chain == ipChain:
		if s.chain {
			return s, errFakeExists
		}
		s.chain = true
	case cmd == "-X" && chain == ipChain && s.chain && len(s.rules) == 0:
		s.chain = false
	case cmd == "-F" && chain == ipChain && s.chain:
		s.rules = nil
	case cmd == "-I" && chain == ipInput && len(spec) > 0 && spec[0] == "1":
		s.input = slices.Insert(s.input, 0, slices.Clone(spec[1:]))
	case cmd == "-A" && chain == ipInput:
		s.input = append(s.input, slices.Clone(spec))
	case cmd == "-D" && chain == ipInput:
		s.input, err = del(s.input, spec)
	case (cmd == "-A" || cmd == "-D") && chain == ipChain && !s.chain:
		return s, errFakeNoChain
	case cmd == "-A" && chain == ipChain:
		if k.noTime && slices.Contains(spec, "time") {
			return s, errFakeNoTime
		}
		s.rules = append(s.rules, slices.Clone(spec))
	case cmd == "-D" && chain == ipChain:
		s.rules, err = del(s.rules, spec)
	default:
		return s, &fakeErr{2, fmt.Sprintf("fake iptables: cannot run %q", args)}
	}
	return s, err
}

// listLocked is `iptables -S` of the filter table.
func (k *fakeXtables) listLocked() string {
	var b strings.Builder
	b.WriteString("-P INPUT DROP\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n")
	if k.chain {
		b.WriteString("-N " + ipChain + "\n")
	}
	line := func(chain string, args []string) {
		b.WriteString("-A " + chain)
		for _, a := range args {
			q, _ := quoteRestoreArg(a)
			b.WriteString(" " + q)
		}
		b.WriteByte('\n')
	}
	for _, r := range k.input {
		line(ipInput, r)
	}
	for _, r := range k.rules {
		line(ipChain, r)
	}
	return b.String()
}

// external is a change someone else makes: it moves the generation.
func (k *fakeXtables) external(f func(k *fakeXtables)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
	k.gen++
}

func (k *fakeXtables) take() []xtCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.calls
	k.calls = nil
	return c
}

// newFakeIPTables is an IPv4-only iptables backend (iptables-nft when nft)
// on k, set up.
func newFakeIPTables(t *testing.T, k *fakeXtables, nft bool) *ipTablesBackend {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: tWriter{t}})
	b := &ipTablesBackend{name: "fake", log: log, now: time.Now, run: k.run, gen: k.readGen, withTime: true}
	b.fams[0] = ipFamily{label: "iptables", bin: "/fake/iptables", restore: "/fake/iptables-restore", nft: nft}
	b.fams[1] = ipFamily{label: "ip6tables", err: errors.New("no IPv6 in the fake")}
	if err := b.Setup(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	k.take()
	return b
}

// callText is the calls as "iptables -S", "iptables -A", "restore -A -D".
func callText(calls []xtCall) []string {
	out := []string{}
	for _, c := range calls {
		if c.restore() {
			s := "restore"
			for _, l := range strings.Split(c.stdin, "\n") {
				if f := strings.Fields(l); len(f) > 1 {
					s += " " + f[0]
				}
			}
			out = append(out, s)
			continue
		}
		args := c.argv[1:]
		for len(args) > 1 && (args[0] == "-w" || args[0] == "-t") {
			args = args[2:]
		}
		out = append(out, "iptables "+args[0])
	}
	return out
}

func wantFakeCalls(t *testing.T, k *fakeXtables, what string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := callText(k.take()); !slices.Equal(got, want) {
		t.Fatalf("%s ran %q, want %q", what, got, want)
	}
}

func fakeGrant(id string, dl time.Time) Grant {
	return Grant{ID: id, Src: src4, Ports: []knock.Port{tcp(22)}, Deadline: dl}
}

func TestIPTablesFakeGeneration(t *testing.T) {
	k := &fakeXtables{}
	b := newFakeIPTables(t, k, true)
	ctx, now := context.Background(), time.Now()
	if !k.chain || len(k.input) != 1 {
		t.Fatalf("Setup left chain %v, INPUT %q", k.chain, k.input)
	}
	g := fakeGrant("a", now.Add(time.Minute))
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "grant", "iptables -A")

	// Someone flushes the chain: the generation moves, the extension
	// re-reads and appends instead of deleting a rule that is gone.
	k.external(func(k *fakeXtables) { k.rules = nil })
	g.Deadline = g.Deadline.Add(time.Minute)
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "extension after a flush", "iptables -S", "iptables -A")
	if len(k.rules) != 1 {
		t.Fatalf("rules %q", k.rules)
	}

	// A generation that cannot be read is a stale view.
	k.genErr = errors.New("netlink: no")
	if err := b.Revoke(ctx, g); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "revoke without a generation", "iptables -S", "iptables -D")
	k.genErr = nil
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "grant once the generation reads again", "iptables -S", "iptables -A")
	g.Deadline = g.Deadline.Add(time.Minute)
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "extension", "restore -A -D")
}

// iptables-legacy has no generation: nothing reads it, and a rule deleted
// by hand is found when the extension's restore fails.
func TestIPTablesFakeLegacy(t *testing.T) {
	k := &fakeXtables{}
	b := newFakeIPTables(t, k, false)
	ctx, now := context.Background(), time.Now()
	g := fakeGrant("a", now.Add(time.Minute))
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	k.external(func(k *fakeXtables) { k.rules = nil })
	g.Deadline = g.Deadline.Add(time.Minute)
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "grant, then extension of a deleted rule", "iptables -A", "restore -A -D", "iptables -S", "iptables -A")
	if k.reads != 0 {
		t.Fatalf("%d generation reads on iptables-legacy", k.reads)
	}
}

// A restore that fails although it was planned on a fresh listing
// (someone changed the chain in between) is run again command by
// command, a delete of what is gone being fine; the view is re-read next
// time.
func TestIPTablesFakeRestoreRace(t *testing.T) {
	k := &fakeXtables{}
	b := newFakeIPTables(t, k, true)
	ctx, now := context.Background(), time.Now()
	g := fakeGrant("a", now.Add(time.Minute))
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	k.take()
	// The extension's restore fails, the listing shows the rule, and the
	// rule vanishes as the second restore runs.
	restores := 0
	k.fail = func(argv []string, stdin string) error {
		if !strings.HasSuffix(argv[0], "-restore") {
			return nil
		}
		if restores++; restores == 2 {
			k.rules = nil
		}
		return xtFail(argv, 1, "iptables-restore: line 3 failed")
	}
	g.Deadline = g.Deadline.Add(time.Minute)
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	k.fail = nil
	wantFakeCalls(t, k, "extension racing a hand edit", "restore -A -D", "iptables -S", "restore -A -D", "iptables -A", "iptables -D")
	if len(k.rules) != 1 || !strings.Contains(strings.Join(k.rules[0], " "), fmt.Sprint(untilSecs(g.Deadline))) {
		t.Fatalf("rules %q", k.rules)
	}
	if b.fams[0].fresh {
		t.Fatal("view fresh after running commands one by one")
	}
	g.Deadline = g.Deadline.Add(time.Minute)
	if err := b.Grant(ctx, g, now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "next extension", "iptables -S", "restore -A -D")
	if len(k.rules) != 1 {
		t.Fatalf("rules %q", k.rules)
	}
}

// Without the time match the grant still goes in, without it, and later
// rules are written without it from the start.
func TestIPTablesFakeNoTimeMatch(t *testing.T) {
	k := &fakeXtables{noTime: true}
	b := newFakeIPTables(t, k, true)
	ctx, now := context.Background(), time.Now()
	if err := b.Grant(ctx, fakeGrant("a", now.Add(time.Minute)), now); err != nil {
		t.Fatal(err)
	}
	wantFakeCalls(t, k, "first grant", "iptables -A", "iptables -S", "iptables -A")
	if len(k.rules) != 1 || slices.Contains(k.rules[0], "time") {
		t.Fatalf("rules %q", k.rules)
	}
	if err := b.Grant(ctx, fakeGrant("b", now.Add(time.Minute)), now); err != nil {
		t.Fatal(err)
	}
	// A failed command may have committed for all the backend knows: the
	// generation is read afresh, and the chain once more.
	wantFakeCalls(t, k, "second grant, shared rule", "iptables -S", "restore -A -D")
}

// The backend says its rules lapse in the kernel (grant.KernelExpiry)
// only once a rule with the time match was accepted, and never when the
// kernel lacks the match.
func TestIPTablesFakeExpiresInKernel(t *testing.T) {
	for _, noTime := range []bool{false, true} {
		k := &fakeXtables{noTime: noTime}
		b := newFakeIPTables(t, k, true)
		if b.ExpiresInKernel() {
			t.Fatalf("noTime=%v: expires in the kernel before any rule was accepted", noTime)
		}
		now := time.Now()
		if err := b.Grant(context.Background(), fakeGrant("a", now.Add(time.Minute)), now); err != nil {
			t.Fatal(err)
		}
		if got := b.ExpiresInKernel(); got != !noTime {
			t.Errorf("noTime=%v: ExpiresInKernel %v after a grant", noTime, got)
		}
	}
}
