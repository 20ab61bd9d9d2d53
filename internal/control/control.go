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
	// Reload re-reads the config file as SIGHUP does. With wait it
	// returns once the reload finished: the error says why the new
	// config was refused (the old one keeps running). Without wait it
	// only queues the reload.
	Reload(ctx context.Context, wait bool) (ReloadResult, error)
}

// ReloadResult is what a reload did.
type ReloadResult struct {
	// Queued: the reload was asked for and not waited for.
	Queued bool `json:"queued,omitempty"`
	// Changed: a new config is in force; false when the file holds the
	// config already running.
	Changed bool `json:"changed"`
	Doors   int  `json:"doors"`
}

// Status is the daemon's state, for `sesame status`.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Config  string    `json:"config"`
	// Reload is the last reload (or the start's reading of the config).
	Reload ReloadStatus `json:"reload"`
	// ConfigErr says why the config file is not the config in force
	// (the last reload, or the start, refused it); "" when it is.
	ConfigErr  string            `json:"config_error,omitempty"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Doors      []DoorStatus      `json:"doors"`
	Grants     int               `json:"grants"`
	// StopFailing counts grants whose stop command or native revoke keeps
	// failing (state "stop failing" in sesame grants).
	StopFailing int            `json:"stop_failing,omitempty"`
	Attempts    int            `json:"attempts"`
	Rescue      RescueStatus   `json:"rescue"`
	Firewall    FirewallStatus `json:"firewall"`
	Journal     JournalStatus  `json:"journal"`
	Metrics     MetricsStatus  `json:"metrics"`
	// Fleet is the fleet membership; nil when no fleet is configured.
	Fleet *FleetStatus `json:"fleet,omitempty"`
	// Healthy is false when a component is unhealthy or the last reload
	// failed; Problems says why, one line each.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// ReloadStatus is the last reload.
type ReloadStatus struct {
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger"` // start, SIGHUP, file change, sesame reload
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"` // with file and line
	// InForce is when the running config came into force.
	InForce time.Time `json:"in_force"`
}

// InterfaceStatus is one capture.
type InterfaceStatus struct {
	Name string `json:"name"`
	// State is "capturing", "waiting" (the interface is missing or down;
	// Why says so) or "starting".
	State  string `json:"state"`
	Why    string `json:"why,omitempty"`
	Filter string `json:"filter,omitempty"` // ebpf or classic
	// Packets and Drops count candidate knocks handed to the matcher and
	// frames the kernel dropped, since the daemon started.
	Packets uint64 `json:"packets"`
	Drops   uint64 `json:"drops"`
}

// DoorStatus is one door.
type DoorStatus struct {
	Name string `json:"name"`
	// Kind is "sequence", "one-time" or "spa"; "" for a door that only
	// has grants left (not in the running config).
	Kind     string `json:"kind"`
	Disabled bool   `json:"disabled,omitempty"`
	Grants   int    `json:"grants"`
}

// RescueStatus is the rescue port, as last read from the kernel.
type RescueStatus struct {
	Configured bool   `json:"configured"`
	Open       bool   `json:"open"`
	Held       bool   `json:"held,omitempty"`
	Installed  bool   `json:"installed"`
	Summary    string `json:"summary"`
}

// FirewallStatus is the backend of native grants and its last repair.
type FirewallStatus struct {
	Backend    string    `json:"backend"` // "" when no door opens ports
	LastRepair time.Time `json:"last_repair,omitzero"`
	Repair     string    `json:"repair,omitempty"` // what it repaired
	Repairs    uint64    `json:"repairs"`
}

// JournalStatus is the grants journal on disk.
type JournalStatus struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// MetricsStatus is where metrics go.
type MetricsStatus struct {
	Listen string    `json:"listen,omitempty"`
	File   string    `json:"file,omitempty"`
	FileAt time.Time `json:"file_written,omitzero"`
	Error  string    `json:"error,omitempty"`
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
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		wait := r.URL.Query().Get("wait") == "1"
		res, err := h.Reload(r.Context(), wait)
		switch {
		case err != nil:
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		case !wait:
			writeJSON(w, http.StatusAccepted, res)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
	serveFleet(mux, h)
	// Requests end with ctx: a reload waited for while sesamed stops
	// returns then.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
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
	hc := c.hc
	if d, ok := ctx.Deadline(); ok && time.Until(d) > hc.Timeout {
		// A call that may wait (reload --wait) is bounded by its context.
		long := *hc
		long.Timeout = 0
		hc = &long
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &UnreachableError{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
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

// UnreachableError is returned when no daemon answers on the socket:
// none runs, or it does not answer (sesame status exits 3).
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "cannot reach sesamed: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Reload asks the daemon to re-read its config file; with wait, it
// returns once the reload finished, with the daemon's error (file and
// line) when the new config was refused. ctx bounds the wait.
func (c *Client) Reload(ctx context.Context, wait bool) (ReloadResult, error) {
	var r ReloadResult
	q := "/v1/reload"
	if wait {
		q += "?wait=1"
	}
	return r, c.call(ctx, http.MethodPost, q, &r)
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.call(ctx, http.MethodGet, "/v1/status", &s)
}
