// Package control is the admin channel between `sesame` and a running
// sesamed: HTTP with JSON bodies over a root-only unix socket. The server
// side only translates requests into calls on the daemon's Handler; the
// client side is what `sesame grants` and `sesame revoke` use.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sesame-knock/sesame/core/grant"
	"github.com/sesame-knock/sesame/internal/trust"
)

// DefaultSocket is where sesamed listens unless told otherwise.
const DefaultSocket = "/run/sesame/control.sock"

// Handler is what the daemon answers with.
type Handler interface {
	Grants() []grant.Grant
	Revoke(target string) ([]string, error)
	// Forget ends a grant whose stop keeps failing without running it
	// again (sesame revoke --forget).
	Forget(ctx context.Context, id string) error
	Status() Status
}

// Status is the daemon's state in brief.
type Status struct {
	Version    string   `json:"version"`
	Config     string   `json:"config"`
	Doors      []string `json:"doors"`
	Interfaces []string `json:"interfaces"`
	Grants     int      `json:"grants"`
	Attempts   int      `json:"attempts"`
	ConfigErr  string   `json:"config_error,omitempty"`
	// StopFailing counts grants whose stop command or native revoke keeps
	// failing (state "stop failing" in sesame grants).
	StopFailing int `json:"stop_failing,omitempty"`
	// Fleet is the fleet membership; nil when no fleet is configured.
	Fleet *FleetStatus `json:"fleet,omitempty"`
}

// Listen opens the socket at path, mode 0600, replacing a stale socket
// left by a killed daemon. It refuses (with an error saying why) a
// directory others could write to or that is not root's (see package
// trust), anything at path that is not a socket Sesame made (a root-owned
// socket of mode 0600), and a socket that still answers: it belongs to a
// live daemon.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := trust.Path(dir); err != nil {
		return nil, fmt.Errorf("control socket %s: directory: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if err := sesameSocket(fi); err != nil {
			return nil, fmt.Errorf("control socket %s: %w: remove it if it is not needed", path, err)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another sesamed is listening", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("control socket %s: probing stale socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: removing stale socket: %w", path, err)
		}
	}
	// The umask makes the socket 0600 from birth: no window where another
	// user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// sesameSocket says why an existing file is not a socket Sesame left.
func sesameSocket(fi os.FileInfo) error {
	if fi.Mode()&os.ModeSocket == 0 {
		return errors.New("exists and is not a socket")
	}
	uid, ok := fileOwner(fi)
	if !ok || !(uid == 0 || int(uid) == os.Geteuid()) || fi.Mode().Perm() != 0o600 {
		return fmt.Errorf("is a socket Sesame did not make (owner uid %d, mode %04o; Sesame's is root's, 0600)", uid, fi.Mode().Perm())
	}
	return nil
}

// Serve answers requests on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h Handler) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/grants", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, h.Grants())
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		ids, err := h.Revoke(r.URL.Query().Get("target"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string][]string{"revoked": ids})
	})
	mux.HandleFunc("POST /v1/forget", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if err := h.Forget(r.Context(), id); err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string][]string{"forgotten": {id}})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, h.Status())
	})
	serveFleet(mux, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Client talks to a daemon's control socket.
type Client struct {
	hc *http.Client
}

// ErrUntrustedPeer is wrapped by the client's errors when the process
// serving the socket is not root's: its answers (grants, revocations)
// could be anyone's invention.
var ErrUntrustedPeer = errors.New("control socket served by a process that is not root's")

// daemonUID is the user a trusted daemon runs as (tests change it).
var daemonUID uint32 = 0

// NewClient returns a client for the socket at path. Every connection is
// checked before it is used: the peer, as the kernel reports it
// (SO_PEERCRED), must be root.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		uid, pid, err := peerCred(c)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: peer credentials: %w", path, err)
		}
		if uid != daemonUID {
			c.Close()
			return nil, fmt.Errorf("%w: %s is served by pid %d, uid %d", ErrUntrustedPeer, path, pid, uid)
		}
		return c, nil
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (c *Client) call(ctx context.Context, method, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://sesamed"+url, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach sesamed: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("sesamed: %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

// Grants lists the daemon's live grants.
func (c *Client) Grants(ctx context.Context) ([]grant.Grant, error) {
	var gs []grant.Grant
	return gs, c.call(ctx, http.MethodGet, "/v1/grants", &gs)
}

// Revoke revokes the grants matching target (an ID or an address).
func (c *Client) Revoke(ctx context.Context, target string) ([]string, error) {
	var r struct{ Revoked []string }
	return r.Revoked, c.call(ctx, http.MethodPost, "/v1/revoke?target="+url.QueryEscape(target), &r)
}

// Forget ends the grant id whose stop keeps failing, without running it
// again; the daemon waits a few seconds for a stop attempt in progress.
func (c *Client) Forget(ctx context.Context, id string) error {
	var r struct{ Forgotten []string }
	return c.call(ctx, http.MethodPost, "/v1/forget?id="+url.QueryEscape(id), &r)
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.call(ctx, http.MethodGet, "/v1/status", &s)
}
