package knockclient

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in    string
		port  string
		proto knock.Proto
	}{
		{"7000", "7000", knock.TCP},
		{"7000:udp", "7000", knock.UDP},
		{"7000:tcp", "7000", knock.TCP},
		// knock: only the lowercase suffix selects UDP.
		{"7000:UDP", "7000", knock.TCP},
		{"ssh:udp", "ssh", knock.UDP},
	}
	for _, tt := range tests {
		if got := ParseTarget(tt.in); got.Port != tt.port || got.Proto != tt.proto {
			t.Errorf("ParseTarget(%q) = %+v", tt.in, got)
		}
	}
}

// Loopback only: a UDP knock arrives as one 1-byte datagram and a TCP
// knock as one connection attempt.
func TestKnockOnLoopback(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	uport := strconv.Itoa(uc.LocalAddr().(*net.UDPAddr).Port)
	tport := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var out bytes.Buffer
	err = Knock(context.Background(), "127.0.0.1", []Target{ParseTarget(uport + ":udp"), ParseTarget(tport)}, Options{Verbose: &out})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := uc.ReadFromUDP(buf)
	if err != nil || n != 1 {
		t.Errorf("udp knock: n=%d err=%v", n, err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	if c, err := ln.Accept(); err != nil {
		t.Errorf("tcp knock not seen: %v", err)
	} else {
		c.Close()
	}
	want := "hitting udp 127.0.0.1:" + uport + "\nhitting tcp 127.0.0.1:" + tport + "\n"
	if out.String() != want {
		t.Errorf("verbose output %q, want %q", out.String(), want)
	}
}

func TestResolveFailures(t *testing.T) {
	ctx := context.Background()
	if err := Knock(ctx, "127.0.0.1", []Target{{Port: "notaport", Proto: knock.TCP}}, Options{}); err == nil {
		t.Error("bad port accepted")
	}
	if err := Knock(ctx, "127.0.0.1", []Target{{Port: "7000", Proto: knock.TCP}}, Options{Family: "ip6"}); err == nil {
		t.Error("-6 with an IPv4 address accepted")
	}
}
