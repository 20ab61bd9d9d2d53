package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// pktSock is one packet socket as `ss -0 -e -m -p -n` shows it: how a
// daemon captures, and what the kernel dropped for it.
type pktSock struct {
	PID       int
	Version   int   // TPACKET version: 0 (V1, also plain recvmsg), 1 (V2), 2 (V3)
	Ring      bool  // a mmap'ed receive ring
	BlockKiB  int   // ring block size
	Blocks    int   // ring blocks
	TimeoutMS int   // ring block retire timeout (tmo)
	RcvBuf    int   // socket receive buffer, bytes
	Drops     int64 // sk_drops: frames dropped because the receive buffer was full (not ring overruns)
}

var (
	ssPID   = regexp.MustCompile(`pid=(\d+),`)
	ssVer   = regexp.MustCompile(`\bver:(\d+)`)
	ssRing  = regexp.MustCompile(`ring_rx\(blk_size:(\d+),blk_nr:(\d+),.*?tmo:(\d+)`)
	ssRcv   = regexp.MustCompile(`skmem:\(.*?\brb(\d+)`)
	ssDrops = regexp.MustCompile(`skmem:\(.*?\bd(\d+)\)`)
)

// parseSS reads `ss -0 -e -m -p -n`: a record starts with the socket's
// line and continues on tab-indented lines.
func parseSS(out string) []pktSock {
	var recs []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "p_"):
			recs = append(recs, l)
		case (strings.HasPrefix(l, "\t") || strings.HasPrefix(l, " ")) && len(recs) > 0:
			recs[len(recs)-1] += " " + strings.TrimSpace(l)
		}
	}
	var out2 []pktSock
	for _, r := range recs {
		m := ssPID.FindStringSubmatch(r)
		if m == nil {
			continue
		}
		s := pktSock{Drops: -1}
		s.PID, _ = strconv.Atoi(m[1])
		if m := ssVer.FindStringSubmatch(r); m != nil {
			s.Version, _ = strconv.Atoi(m[1])
		}
		if m := ssRing.FindStringSubmatch(r); m != nil {
			s.Ring = true
			bs, _ := strconv.Atoi(m[1])
			s.BlockKiB = bs / 1024
			s.Blocks, _ = strconv.Atoi(m[2])
			s.TimeoutMS, _ = strconv.Atoi(m[3])
		}
		if m := ssRcv.FindStringSubmatch(r); m != nil {
			s.RcvBuf, _ = strconv.Atoi(m[1])
		}
		if m := ssDrops.FindStringSubmatch(r); m != nil {
			s.Drops, _ = strconv.ParseInt(m[1], 10, 64)
		}
		out2 = append(out2, s)
	}
	return out2
}

// describe says how the socket captures, for the report.
func (s pktSock) describe() string {
	if s.Ring {
		return fmt.Sprintf("TPACKET_V%d ring of %d × %d KiB, block timeout %d ms", s.Version+1, s.Blocks, s.BlockKiB, s.TimeoutMS)
	}
	return fmt.Sprintf("recvmsg on a packet socket, receive buffer %d KiB", s.RcvBuf/1024)
}
