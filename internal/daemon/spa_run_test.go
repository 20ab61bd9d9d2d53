package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/control"
	"github.com/sesame-knock/sesame/internal/notifytest"
	"github.com/sesame-knock/sesame/internal/syncbuf"
)

// runningDaemon is run() on fake captures and a recording firewall.
type runningDaemon struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	stderr *syncbuf.Buffer
	c      *fakeCapture
}

func startFake(t *testing.T, opts Options, fw *recordingFirewall) *runningDaemon {
	t.Helper()
	opened := make(chan *fakeCapture, 1)
	rd := &runningDaemon{t: t, done: make(chan error, 1), stderr: &syncbuf.Buffer{}}
	opts.Stderr = rd.stderr
	notify := notifytest.Use(t)
	ctx, cancel := context.WithCancel(context.Background())
	rd.cancel = cancel
	dp := fakeDeps(fw, opened)
	dp.listen = control.Listen
	go func() { rd.done <- run(ctx, opts, dp) }()
	for state := ""; !strings.Contains(state, "READY=1"); {
		s, err := notifytest.Next(notify, 30*time.Second)
		if err != nil {
			cancel()
			t.Fatalf("not ready: %v\n%s", err, rd.stderr.String())
		}
		if strings.HasPrefix(s, "STOPPING=1") {
			cancel()
			t.Fatalf("stopping before ready:\n%s", rd.stderr.String())
		}
		state = s
	}
	rd.c = <-opened
	return rd
}

func (rd *runningDaemon) stop() {
	rd.cancel()
	select {
	case err := <-rd.done:
		if err != nil {
			rd.t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		rd.t.Fatal("run did not return")
	}
}

func (rd *runningDaemon) send(src netip.Addr, payload []byte) {
	rd.c.dgrams <- fakeDatagram{knock.Packet{Src: src, Dst: netip.MustParseAddr("127.0.0.1"), Port: 62201, Proto: knock.UDP}, payload}
}

// waitLog waits until the daemon's output holds s n times.
func (rd *runningDaemon) waitLog(s string, n int) {
	rd.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(rd.stderr.String(), s) < n {
		if time.Now().After(deadline) {
			rd.t.Fatalf("no %q (%d times) in:\n%s", s, n, rd.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sesamed with SPA, without root: an fwknop packet and an SSH-signed
// knock on the capture become native grants of the ports their files
// allow (which the firewall guards), the capture filter takes SPA_Port's
// datagrams, a replay is refused also after a restart (the digest came
// back from the journal), and a reload without a key's line revokes that
// key's grant.
func TestRunSPAWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "sesame.conf")
	accessPath := filepath.Join(dir, "access.conf")
	keysPath := filepath.Join(dir, "authorized_keys")
	alice := newSSHKey(t, `open="tcp/2222"`, "alice@laptop")
	bob := newSSHKey(t, `open="tcp/2222"`, "bob")
	os.WriteFile(accessPath, []byte(accessConf("")), 0o600)
	os.WriteFile(keysPath, []byte(alice.line+"\n"+bob.line+"\n"), 0o600)
	config := "[options]\nSPA_Access = " + accessPath + "\nSPA_Authorized_Keys = " + keysPath + "\n[d]\nsequence = 7000\n"
	os.WriteFile(conf, []byte(config), 0o600)
	fw := &recordingFirewall{granted: make(chan string, 8)}
	opts := Options{ConfigPath: conf, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "ctl.sock"),
		Interfaces: []string{"lo"}, Version: "test"}
	rd := startFake(t, opts, fw)
	if spec := rd.c.filter(); !slices.Equal(spec.Datagrams, []uint16{62201}) {
		t.Errorf("capture filter %+v: no SPA_Port datagrams", spec)
	}
	if got := fw.setupCalls(); len(got) != 1 || got[0] != "22:tcp,443:tcp,2222:tcp" {
		t.Errorf("guarded ports %v, want the stanza's and the keys'", got)
	}
	src := netip.MustParseAddr("192.0.2.9")
	pkt := fwknopPacket(t, src.String(), "tcp/22", time.Now())
	rd.send(src, pkt)
	rd.send(src, alice.knock(t, netip.MustParseAddr("127.0.0.1"), time.Now(), knock.Port{Num: 2222, Proto: knock.TCP}))
	for range 2 {
		select {
		case <-fw.granted:
		case <-time.After(30 * time.Second):
			t.Fatalf("no native grant:\n%s", rd.stderr.String())
		}
	}
	rd.send(src, pkt)
	rd.waitLog("reason=replay", 1)
	rd.waitLog("access granted", 2)
	// sesame status lists SPA's doors (the stanza, the SSH keys) with
	// their grants, beside the config's.
	st, err := control.NewClient(opts.Socket).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var doors []string
	for _, d := range st.Doors {
		doors = append(doors, fmt.Sprintf("%s %s %d", d.Name, d.Kind, d.Grants))
	}
	if want := []string{"d sequence 0", "spa#1 spa 1", "ssh spa 1"}; !slices.Equal(doors, want) {
		t.Errorf("status doors %q, want %q", doors, want)
	}
	for _, want := range []string{"auth=fwknop user=alice", "auth=ssh user=alice@laptop"} {
		if !strings.Contains(rd.stderr.String(), want) {
			t.Errorf("no grant line with %q:\n%s", want, rd.stderr.String())
		}
	}
	rd.stop()

	// A restart: the journal still refuses the packet, and bob's knock
	// still opens.
	rd = startFake(t, opts, fw)
	rd.waitLog("2 digests of accepted SPA packets restored", 1)
	rd.send(src, pkt)
	rd.waitLog("reason=replay", 1)
	grants := len(fw.grantCalls())
	// The line of alice goes; a change of the config reloads.
	os.WriteFile(keysPath, []byte(bob.line+"\n"), 0o600)
	os.WriteFile(conf, []byte(config+"# edited\n"), 0o600)
	rd.waitLog("is no longer in SPA_Authorized_Keys: revoking its 1 grants", 1)
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(fw.allCalls(), "revoke "+src.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's grant not revoked: %v\n%s", fw.allCalls(), rd.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(fw.grantCalls()); n != grants {
		t.Errorf("%d native grants after the replay, want %d", n, grants)
	}
	rd.stop()
}
