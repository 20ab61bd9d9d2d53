package main

import (
	"net"
	"net/netip"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

// knockerOptions drive the knockers subcommand: real clients that knock
// from their own addresses and then measure when the protected port
// lets them in.
type knockerOptions struct {
	Iface   string
	DstMAC  net.HardwareAddr
	Dst     netip.Addr
	Port    uint16       // the protected port
	Seq     []knock.Port // the door's sequence
	Flags   uint8        // TCP flags of TCP knocks
	Sources []netip.Addr // one knocker per address

	// Interval is the spacing of connection attempts while waiting for
	// the door: a SYN dropped by the firewall is only retransmitted after
	// a second, so a new attempt is started every Interval and the first
	// that completes marks the moment the door opened (to within
	// Interval). Life is how long one attempt waits for its SYN-ACK;
	// Timeout is how long after its last knock a knocker gives up.
	Interval, Life, Timeout time.Duration

	// Concurrency knockers are active at once; starts are at least
	// Stagger apart and at least Gap plus a random part of GapJitter after
	// a knocker finished. The jitter keeps sequential samples from locking
	// onto a periodic timer in the daemon (knockd's capture timeout); it
	// comes from a fixed seed, so every daemon gets the same pauses.
	Concurrency   int
	Stagger, Gap  time.Duration
	GapJitter     time.Duration
	KnockInterval time.Duration // between a knocker's knocks (knock -d)
}

// sample is one knocker's outcome. Times are CLOCK_MONOTONIC nanoseconds,
// comparable with other processes' (the bench driver timestamps the
// daemons' log lines on the same clock).
type sample struct {
	Src       string  `json:"src"`
	KnockNS   int64   `json:"knock_ns"`   // just before the last knock was sent
	ConnNS    int64   `json:"conn_ns"`    // when a connection completed; 0 if none
	OK        bool    `json:"ok"`         // a connection completed before Timeout
	LatencyMS float64 `json:"latency_ms"` // ConnNS-KnockNS in milliseconds when OK
	Attempts  int     `json:"attempts"`   // connection attempts started
	// DetectMS is filled in by the driver: last knock to the daemon's
	// OPEN SESAME line for this source (0 when not seen).
	DetectMS float64 `json:"detect_ms,omitempty"`
	// ExecMS is filled in by the driver for the shell rows: last knock to
	// the start command's first instruction (its exec stamp; 0 when none).
	ExecMS float64 `json:"exec_ms,omitempty"`
	// Opened is filled in by the driver for the flood rows: the daemon
	// logged OPEN SESAME for this source.
	Opened bool `json:"opened,omitempty"`
}
