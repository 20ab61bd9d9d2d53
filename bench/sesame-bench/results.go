package main

import "time"

// What the driver measured; report.go turns it into markdown.

// machineInfo describes where the numbers come from.
type machineInfo struct {
	Cores     int    `json:"cores"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
	Knockd    string `json:"knockd"`
	Iptables  string `json:"iptables"`
	Go        string `json:"go"`
}

// latencyRow is one configuration's knock-to-connect samples.
type latencyRow struct {
	Variant variant  `json:"variant"`
	Family  int      `json:"family"`
	Samples []sample `json:"samples"`
	// Noise is the generator's report when the row ran under noise.
	Noise *genReport `json:"noise,omitempty"`
	// Capture is how the daemon's packet socket captures (from ss).
	Capture string `json:"capture,omitempty"`
	Err     string `json:"error,omitempty"`
}

// floodRow is 100 real knockers under one spoofed flood.
type floodRow struct {
	Variant  variant    `json:"variant"`
	Mode     string     `json:"mode"` // one of the flood modes
	Family   int        `json:"family"`
	Rate     float64    `json:"rate"` // target packets/s; 0: no flood, -1: as fast as the generator can
	Gen      *genReport `json:"gen,omitempty"`
	Knockers []sample   `json:"knockers"`
	// CPUPct is the daemon's user+sys time over the flood, in percent of
	// one core; HWMKiB its peak resident set (VmHWM).
	CPUPct float64 `json:"cpu_pct"`
	HWMKiB uint64  `json:"hwm_kib"`
	// RxDropped counts packets the server's veth dropped (its backlog
	// full): traffic sent but never seen by anyone.
	RxDropped uint64 `json:"rx_dropped"`
	// SocketDrops are frames the kernel dropped because the daemon's
	// capture socket's receive buffer was full; -1 when ss cannot tell
	// (a mmap ring's overruns are not counted there).
	SocketDrops int64  `json:"socket_drops"`
	Capture     string `json:"capture,omitempty"`
	// LogLines is what the daemon wrote to its output and LogFile:
	// StderrLines and LogFileLines.
	LogLines     int64 `json:"log_lines"`
	StderrLines  int64 `json:"stderr_lines"`
	LogFileLines int64 `json:"logfile_lines"`
	// FloodSeconds is how long the measurement ran (CPU's denominator).
	FloodSeconds float64 `json:"flood_seconds"`
	Err          string  `json:"error,omitempty"`
}

type results struct {
	Machine   machineInfo   `json:"machine"`
	Command   string        `json:"command"`
	Quick     bool          `json:"quick"`
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Interval  string        `json:"probe_interval"`
	FloodWarm time.Duration `json:"flood_warm"`
	NoiseRate float64       `json:"noise_rate"` // 0: the generator's top rate
	Stagger   time.Duration `json:"flood_stagger"`
	Latency   []latencyRow  `json:"latency"`
	Noise     []latencyRow  `json:"noise"`
	Flood     []floodRow    `json:"flood"`
	Match     []matchRow    `json:"match"`
	MatchCmd  string        `json:"match_cmd"`
	MatchErr  string        `json:"match_error,omitempty"`
	// The capture rows (unrelated traffic, 10,000 knock ports), the eBPF
	// filter's own cost, and the first-knock flood sweep.
	LoadWindow time.Duration `json:"load_window"`
	Capture    []captureRow  `json:"capture"`
	Filter     []filterRow   `json:"filter"`
	FilterCmd  string        `json:"filter_cmd"`
	FilterErr  string        `json:"filter_error,omitempty"`
	Sweep      []floodRow    `json:"sweep"` // rate -1: the generator's top rate
	// SPA is the SPA section (spabench.go); nil when the run left it out.
	SPA *spaResults `json:"spa,omitempty"`
	// Fleet is the fleet section (fleetbench.go); nil when left out.
	Fleet *fleetResults `json:"fleet,omitempty"`
	// Spawn is the machine's own cost of spawning `/bin/sh -c` from a Go
	// process (ms per sample, see spawnCost) under a knocker's probing
	// (spawnUnderProbe), measured around the latency rows.
	Spawn []float64 `json:"spawn_ms"`
	// SpawnIdle is the same without the probe's load (for reference).
	SpawnIdle []float64 `json:"spawn_idle_ms"`
	// CmdCost is the shell rows' `iptables -I` alone, exec'd by the
	// driver in a server namespace to its exit under the same probe
	// (commandCost): what that start command costs whoever runs it.
	CmdCost  []float64 `json:"command_ms"`
	SpawnErr string    `json:"spawn_error,omitempty"`
}
