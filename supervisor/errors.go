package supervisor

import "errors"

var (
	// ErrEscalated is returned (wrapped) by Supervisor.Serve when a component
	// failed too often or hung: the daemon should exit non-zero so that
	// systemd restarts the whole process.
	ErrEscalated = errors.New("supervisor: escalating to process exit")

	// ErrStale is wrapped in the error a component's run ends with when the
	// supervisor cancelled it for not beating within its maximum silence.
	ErrStale = errors.New("component heartbeat stale")

	// ErrHung is wrapped in the escalation error when a component did not
	// return within the stop timeout after its context was cancelled.
	ErrHung = errors.New("component did not stop")
)
