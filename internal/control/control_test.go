package control

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/grant"
)

type fakeHandler struct {
	revoked, forgotten []string
	reloads            []bool // wait of each Reload
	reloadErr          error
}

func (f *fakeHandler) Grants() []grant.Grant {
	return []grant.Grant{{ID: "g1", Door: "ssh", Source: netip.MustParseAddr("192.0.2.1"), State: "active"}}
}
func (f *fakeHandler) Revoke(t string) ([]string, error) {
	if t != "g1" && t != "192.0.2.1" {
		return nil, errors.New("no active grant matches " + t)
	}
	f.revoked = append(f.revoked, t)
	return []string{"g1"}, nil
}
func (f *fakeHandler) Forget(ctx context.Context, id string) error {
	if id != "g1" {
		return errors.New("grant " + id + " is active: its stop is not failing")
	}
	f.forgotten = append(f.forgotten, id)
	return nil
}
func (f *fakeHandler) Status() Status {
	return Status{Doors: []DoorStatus{{Name: "ssh", Kind: "sequence", Grants: 1}}, Grants: 1}
}
func (f *fakeHandler) Reload(_ context.Context, wait bool) (ReloadResult, error) {
	f.reloads = append(f.reloads, wait)
	if !wait {
		return ReloadResult{Queued: true}, nil
	}
	return ReloadResult{Changed: true, Doors: 2}, f.reloadErr
}

func serve(t *testing.T, path string, h Handler) {
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, ln, h); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	h := &fakeHandler{}
	serve(t, path, h)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	c := NewClient(path)
	ctx := context.Background()
	gs, err := c.Grants(ctx)
	if err != nil || len(gs) != 1 || gs[0].Source != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("Grants = %+v %v", gs, err)
	}
	ids, err := c.Revoke(ctx, "192.0.2.1")
	if err != nil || len(ids) != 1 {
		t.Fatalf("Revoke = %v %v", ids, err)
	}
	if _, err := c.Revoke(ctx, "nobody & co"); err == nil || !strings.Contains(err.Error(), "nobody & co") {
		t.Errorf("Revoke of unknown: %v", err)
	}
	if err := c.Forget(ctx, "g1"); err != nil || len(h.forgotten) != 1 {
		t.Fatalf("Forget = %v %v", h.forgotten, err)
	}
	if err := c.Forget(ctx, "g2"); err == nil || !strings.Contains(err.Error(), "not failing") {
		t.Errorf("Forget of a grant that is not failing: %v", err)
	}
	if st, err := c.Status(ctx); err != nil || st.Grants != 1 || st.Doors[0].Name != "ssh" {
		t.Errorf("Status = %+v %v", st, err)
	}
	if r, err := c.Reload(ctx, false); err != nil || !r.Queued {
		t.Errorf("Reload without wait = %+v %v", r, err)
	}
	if r, err := c.Reload(ctx, true); err != nil || !r.Changed || r.Doors != 2 {
		t.Errorf("Reload = %+v %v", r, err)
	}
	h.reloadErr = errors.New("/etc/sesame/sesame.conf:3: Sequence: port 0")
	if _, err := c.Reload(ctx, true); err == nil || err.Error() != h.reloadErr.Error() {
		t.Errorf("refused Reload: %v", err)
	}
	if len(h.reloads) != 3 || h.reloads[0] || !h.reloads[1] {
		t.Errorf("reloads %v", h.reloads)
	}
}

// No daemon on the socket: an UnreachableError (sesame status exits 3).
func TestUnreachable(t *testing.T) {
	_, err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Status(context.Background())
	var u *UnreachableError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "cannot reach sesamed") {
		t.Errorf("err = %v", err)
	}
}

func TestListenReplacesStaleSocketButNotALiveOne(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	// A socket file nobody listens on: what a SIGKILLed daemon leaves.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	os.Chmod(path, 0o600) // as Sesame makes it
	if _, err := os.Stat(path); err != nil {
		t.Fatal("stale socket not left behind:", err)
	}
	serve(t, path, &fakeHandler{})
	if _, err := NewClient(path).Grants(context.Background()); err != nil {
		t.Fatalf("daemon on replaced socket unreachable: %v", err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another sesamed") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := Listen(plain); err == nil {
		t.Error("Listen replaced a regular file")
	}
}

func TestClientWithoutDaemon(t *testing.T) {
	_, err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Grants(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach sesamed") {
		t.Errorf("err = %v", err)
	}
}

// What is at the socket path and is not a socket Sesame left is refused
// and left alone; so is a directory others could write to.
func TestListenRefusesWhatIsNotSesames(t *testing.T) {
	socket := func(t *testing.T, path string, mode os.FileMode) {
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		os.Chmod(path, mode)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, path string)
		want  string
	}{
		{"regular file", func(t *testing.T, dir, path string) { os.WriteFile(path, []byte("x"), 0o600) }, "is not a socket"},
		{"symlink to a socket", func(t *testing.T, dir, path string) {
			socket(t, filepath.Join(dir, "real.sock"), 0o600)
			os.Symlink(filepath.Join(dir, "real.sock"), path)
		}, "is not a socket"},
		{"socket others may use", func(t *testing.T, dir, path string) { socket(t, path, 0o666) }, "Sesame did not make"},
		{"directory others may write", func(t *testing.T, dir, path string) { os.Chmod(dir, 0o777) }, "is writable by its group or others"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			os.Mkdir(dir, 0o700)
			path := filepath.Join(dir, "control.sock")
			tc.setup(t, dir, path)
			before, _ := os.Lstat(path)
			ln, err := Listen(path)
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want it to name %s and say %q", err, path, tc.want)
			}
			if after, _ := os.Lstat(path); (before == nil) != (after == nil) {
				t.Errorf("Listen removed or created %s", path)
			}
		})
	}
}

// A daemon that is not root's is not trusted, whatever it answers.
func TestClientChecksThePeerIsRoot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	serve(t, path, &fakeHandler{})
	old := daemonUID
	daemonUID = uint32(os.Geteuid()) + 1
	t.Cleanup(func() { daemonUID = old })
	_, err := NewClient(path).Grants(context.Background())
	if !errors.Is(err, ErrUntrustedPeer) {
		t.Fatalf("Grants from a daemon of another user: %v, want ErrUntrustedPeer", err)
	}
}
