package grant

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/knock"
)

var (
	src4 = netip.MustParseAddr("192.0.2.7")
	src6 = netip.MustParseAddr("2001:db8::7")
)

func cmdDoor() *config.Door {
	return &config.Door{Name: "ssh", CmdTimeout: 10 * time.Second,
		Start: config.Command{Text: "open %IP%", Set: true},
		Stop:  config.Command{Text: "close %IP%", Set: true}}
}

func TestCommandGrantLifecycle(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.duration = 2 * time.Second // a slow start command
		if got := r.m.Open(cmdDoor(), src4, time.Now()); got != Granted {
			t.Fatalf("Open = %v", got)
		}
		r.advance(2 * time.Second)
		// Journaled before the start command; cmd_timeout counts from the
		// end of the start command (+2s), journaled as the new deadline.
		r.expect(
			`journal grant ssh 192.0.2.7 stop="close 192.0.2.7" open=[] deadline=+10s pending=true`,
			"run ssh: open 192.0.2.7",
			"journal started at +2s deadline +12s",
		)
		r.advance(9*time.Second + 999*time.Millisecond) // now +11.999s
		if n := r.tr.count("run ssh: close"); n != 0 {
			t.Fatal("stop ran early")
		}
		r.advance(time.Millisecond + 2*time.Second)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="close 192.0.2.7" open=[] deadline=+10s pending=true`,
			"run ssh: open 192.0.2.7",
			"journal started at +2s deadline +12s",
			"journal revoking",
			"run ssh: close 192.0.2.7",
			"journal revoked at +14s",
		)
		if len(r.m.List()) != 0 {
			t.Errorf("grants left: %+v", r.m.List())
		}
	})
}

func TestRepeatKnockExtendsInsteadOfRerunning(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.advance(5 * time.Second)
		if got := r.m.Open(cmdDoor(), src4, time.Now()); got != Extended {
			t.Fatalf("second Open = %v", got)
		}
		r.advance(6 * time.Second) // +11s: the original deadline (+10s) passed
		if r.tr.count("run ssh: close") != 0 {
			t.Fatal("stop ran at the original deadline after an extension")
		}
		r.advance(4 * time.Second) // +15s
		if r.tr.count("run ssh: open") != 1 || r.tr.count("run ssh: close") != 1 || r.tr.count("journal extend +15s") != 1 {
			t.Fatalf("trace %q", r.tr.all())
		}
		// A knock after revocation is a new grant.
		if got := r.m.Open(cmdDoor(), src4, time.Now()); got != Granted {
			t.Fatalf("Open after revoke = %v", got)
		}
		r.settle()
		if r.tr.count("run ssh: open") != 2 {
			t.Errorf("start not run for a new grant")
		}
	})
}

func TestDoorsWithoutRevokeAreNotTracked(t *testing.T) {
	tests := []struct {
		name string
		door *config.Door
		want Outcome
		runs int
	}{
		{"start only runs every time", &config.Door{Name: "d", CmdTimeout: time.Second, Start: config.Command{Text: "hello %IP%", Set: true}}, RanStart, 1},
		{"stop without start runs nothing", &config.Door{Name: "d", CmdTimeout: time.Second, Stop: config.Command{Text: "bye", Set: true}}, Ignored, 0},
		{"empty start runs nothing", &config.Door{Name: "d", CmdTimeout: time.Second, Start: config.Command{Text: "", Set: true}, Stop: config.Command{Text: "bye", Set: true}}, Ignored, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, r *rig) {
				for i := 0; i < 2; i++ {
					if got := r.m.Open(tt.door, src4, time.Now()); got != tt.want {
						t.Fatalf("Open = %v, want %v", got, tt.want)
					}
					r.settle()
				}
				if n := r.tr.count("run "); n != 2*tt.runs {
					t.Errorf("runs %d, want %d: %q", n, 2*tt.runs, r.tr.all())
				}
				if r.tr.count("journal") != 0 || len(r.m.List()) != 0 {
					t.Errorf("tracked: %q", r.tr.all())
				}
			})
		})
	}
}

func TestIPv6UsesTheSixCommands(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		d := cmdDoor()
		d.Start6 = config.Command{Text: "open6 %IP%", Set: true}
		r.m.Open(d, src6, time.Now())
		r.advance(10 * time.Second)
		// Start falls back independently: start_6 set, stop_6 not.
		if r.tr.count("run ssh: open6 2001:db8::7") != 1 || r.tr.count("run ssh: close 2001:db8::7") != 1 {
			t.Errorf("trace %q", r.tr.all())
		}
	})
}

func nativeDoor() *config.Door {
	return &config.Door{Name: "web", CmdTimeout: 10 * time.Second, OpenTimeout: 30 * time.Second,
		Open: []knock.Port{{Num: 22, Proto: knock.TCP}}}
}

// nativeLife is the trace of a native grant on nativeDoor from its knock
// to its deadline.
var nativeLife = []string{
	`journal grant web 192.0.2.7 stop="" open=[22:tcp] deadline=+30s pending=false`,
	"fw grant 192.0.2.7 [22:tcp] until +30s",
	"fw revoke 192.0.2.7",
	"journal revoked at +30s",
}

func TestNativeGrant(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(nativeDoor(), src4, time.Now())
		r.settle()
		if ng := r.m.Native(); len(ng) != 1 || ng[0].Src != src4 {
			t.Fatalf("Native() = %+v", ng)
		}
		r.advance(30 * time.Second)
		r.expect(nativeLife...)
	})
}

// A manager made without a firewall (no door had Open at start) takes
// one later, when a reload adds the first door with Open; once it has a
// firewall it keeps it.
func TestSetFirewallAfterStart(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(nativeDoor(), src4, time.Now())
		r.settle()
		if len(r.m.Native()) != 0 || !strings.Contains(r.log.String(), "no firewall backend") {
			t.Fatalf("a native grant without a firewall: %+v", r.m.Native())
		}
		if !r.m.SetFirewall(r.fw) {
			t.Fatal("SetFirewall refused the first firewall")
		}
		if r.m.SetFirewall(&fakeFirewall{tr: r.tr}) {
			t.Error("SetFirewall replaced the firewall grants were made through")
		}
		r.m.Open(nativeDoor(), src4, time.Now())
		r.advance(30 * time.Second)
		r.expect(nativeLife...)
	}, func(o *Options) { o.Firewall = nil })
}

func TestJournalFailureRefusesTheGrant(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.j.failAll = true
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		if r.tr.count("run") != 0 || len(r.m.List()) != 0 {
			t.Errorf("grant applied without a journal record: %q", r.tr.all())
		}
	})
}

// A start whose marker cannot be written is not run: a crash could
// orphan it with nothing to say it ran.
func TestStartWithoutMarkerRoomIsNotRun(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		if r.tr.count("run ssh: open") != 0 || r.tr.count("run ssh: close") != 0 || r.tr.count("journal revoked") != 1 {
			t.Errorf("trace %q", r.tr.all())
		}
	}, func(o *Options) { o.MarkerDir = o.MarkerDir + "/missing" })
}

func TestRateLimited(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.deny = true
		if got := r.m.Open(cmdDoor(), src4, time.Now()); got != RateLimited {
			t.Fatalf("Open = %v", got)
		}
	})
}

func TestAdminRevoke(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		ids, err := r.m.Revoke("192.0.2.7")
		if err != nil || len(ids) != 1 {
			t.Fatalf("Revoke = %v %v", ids, err)
		}
		r.settle()
		if r.tr.count("run ssh: close 192.0.2.7") != 1 || len(r.m.List()) != 0 {
			t.Fatalf("trace %q", r.tr.all())
		}
		if _, err := r.m.Revoke("192.0.2.7"); err == nil {
			t.Error("revoking nothing is not reported")
		}
		r.advance(time.Minute)
		if r.tr.count("run ssh: close") != 1 {
			t.Error("stop ran again at the old deadline")
		}
	})
}

// An admin revoke while the start command runs revokes once it is done.
func TestAdminRevokeWhileStarting(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.duration = time.Second
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		if _, err := r.m.Revoke("192.0.2.7"); err != nil {
			t.Fatal(err)
		}
		r.advance(3 * time.Second)
		r.expect(
			`journal grant ssh 192.0.2.7 stop="close 192.0.2.7" open=[] deadline=+10s pending=true`,
			"run ssh: open 192.0.2.7",
			"journal revoking",
			"run ssh: close 192.0.2.7",
			"journal revoked at +2s",
		)
	})
}

func TestCloseLeavesGrantsJournaled(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		r.restart()
		r.advance(time.Minute)
		if r.tr.count("run ssh: close") != 0 || r.tr.count("journal revoked") != 0 {
			t.Errorf("clean shutdown revoked a grant: %q", r.tr.all())
		}
	})
}

func TestNativeOnlyDoorsHaveTheirOwnLimit(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.deny = true // the command limit must not apply to a native-only door
		d := nativeDoor()
		granted, limited := 0, 0
		now := time.Now()
		for i := 0; i < NativeBurst+50; i++ {
			src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			switch r.m.Open(d, src, now) {
			case Granted:
				granted++
			case RateLimited:
				limited++
			}
		}
		r.settle()
		if granted != NativeBurst || limited != 50 {
			t.Errorf("granted %d, limited %d; want %d and 50", granted, limited, NativeBurst)
		}
	})
}

// A start command that fails is shown by List (sesame grants) with its
// status and the first line of its output (issue 18); the grant still
// ends at its deadline with its stop command, as knockd's would.
func TestFailedStartIsShown(t *testing.T) {
	bubble(t, func(t *testing.T, r *rig) {
		r.cmds.fails["open 192.0.2.7"] = 1
		r.cmds.output = "sh: 1: open: not found\nmore"
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		gs := r.m.List()
		if len(gs) != 1 || gs[0].State != "active" || gs[0].StartError != "exit status 1: sh: 1: open: not found" {
			t.Fatalf("grants %+v", gs)
		}
		r.advance(11 * time.Second)
		if r.tr.count("run ssh: close 192.0.2.7") != 1 {
			t.Errorf("stop not run at the deadline: %q", r.tr.all())
		}
		// A start that succeeds shows nothing.
		r.m.Open(cmdDoor(), src4, time.Now())
		r.settle()
		if gs := r.m.List(); len(gs) != 1 || gs[0].StartError != "" {
			t.Errorf("grants %+v", gs)
		}
	})
}
