package control

import (
	"context"
	"net/http"
	"net/netip"
	"time"
)

// FleetStatus is the daemon's membership of a fleet group, for
// `sesame status`, STATUS= and the metrics.
type FleetStatus struct {
	Group string `json:"group"`
	Node  string `json:"node"`
	// Off says why the fleet is configured but not running (its TLS
	// files could not be read, the node name is bad); "" when it runs.
	Off string `json:"off,omitempty"`
	// Connected: etcd answered the last probe or watch response.
	Connected bool `json:"connected"`
	// Revision is the last revision of the group applied here; Head the
	// cluster's at the last probe; Lag how many revisions of the cluster
	// the watch has not confirmed yet (0 when caught up).
	Revision    int64     `json:"revision"`
	Head        int64     `json:"head"`
	Lag         int64     `json:"lag"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Error       string    `json:"error,omitempty"`
	// Snapshots counts re-lists (a start without a revision, history
	// compacted while away); Refused grant values that did not parse.
	Snapshots int `json:"snapshots"`
	Refused   int `json:"refused"`
	// Unpublished counts this node's grants the group has not confirmed
	// yet (being published, or waiting for etcd).
	Unpublished int `json:"unpublished"`
}

// FleetGrant is one grant of the group, as `sesame grants --fleet`
// shows it.
type FleetGrant struct {
	ID       string     `json:"id"`
	Door     string     `json:"door"`
	Source   netip.Addr `json:"source"`
	Ports    string     `json:"ports,omitempty"`
	Deadline time.Time  `json:"deadline"`
	Origin   string     `json:"origin"`
	Identity string     `json:"identity,omitempty"`
	// Here: this node holds the grant (made it, or applied it).
	Here bool `json:"here"`
}

// FleetList is the group's live grants at one revision.
type FleetList struct {
	Group    string       `json:"group"`
	Node     string       `json:"node"`
	Revision int64        `json:"revision"`
	Grants   []FleetGrant `json:"grants"`
	// Refused are values under the group's prefix that do not parse.
	Refused []string `json:"refused,omitempty"`
}

// FleetHandler is what a daemon in a fleet answers besides Handler.
type FleetHandler interface {
	FleetGrants(ctx context.Context) (FleetList, error)
}

// serveFleet adds the fleet's requests to mux when h answers them.
func serveFleet(mux *http.ServeMux, h Handler) {
	fh, ok := h.(FleetHandler)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/fleet/grants", func(w http.ResponseWriter, r *http.Request) {
		l, err := fh.FleetGrants(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, l)
	})
}

// FleetGrants lists the live grants of the daemon's fleet group.
func (c *Client) FleetGrants(ctx context.Context) (FleetList, error) {
	var l FleetList
	return l, c.call(ctx, http.MethodGet, "/v1/fleet/grants", &l)
}
