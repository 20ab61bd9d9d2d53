package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/spa"
)

func decodeB64Key(s string) ([]byte, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(s), "="))
	if err != nil || len(b) == 0 {
		return nil, errors.New("not base64-encoded data")
	}
	return b, nil
}

func checkProto(p string) error {
	if !strings.EqualFold(p, "udp") {
		return fmt.Errorf("%q: only udp is supported", p)
	}
	return nil
}

// spaKeyGen prints new keys as fwknop --key-gen does: a 32-byte Rijndael
// key and an HMAC key sized for the digest (64 bytes for SHA-256).
func spaKeyGen(w io.Writer, hmacType string) error {
	t, err := spa.ParseHashType(hmacType)
	if err != nil {
		return exitError{1, "error: " + err.Error()}
	}
	n := map[spa.HashType]int{spa.MD5: 16, spa.SHA1: 20, spa.SHA384: 128, spa.SHA512: 128}[t]
	if n == 0 {
		n = 64
	}
	key, hk := make([]byte, 32), make([]byte, n)
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(key)
	_, _ = rand.Read(hk)
	fmt.Fprintf(w, "KEY_BASE64: %s\nHMAC_KEY_BASE64: %s\n", base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(hk))
	return nil
}

// parseTimeOffset reads fwknop's --time-offset-* values: digits, with
// the first m, h or d after them making minutes, hours or days (so 300,
// 300sec, 5min, 2h and 1d work); other letters are ignored, as in fwknop.
// The number is at most 65536.
func parseTimeOffset(s string) (int, error) {
	digits, unit := "", 1
loop:
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits += string(c)
		case c == 'm' || c == 'M':
			unit = 60
			break loop
		case c == 'h' || c == 'H':
			unit = 3600
			break loop
		case c == 'd' || c == 'D':
			unit = 86400
			break loop
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > 2<<15 {
		return 0, fmt.Errorf("time offset %q: want N[sec|min|hours|days], N at most %d", s, 2<<15)
	}
	return n * unit, nil
}

// spaUser is the user name fwknop puts in packets: SPOOF_USER, LOGNAME,
// the login name, USER, or NO_USER.
func spaUser() string {
	for _, env := range []string{"SPOOF_USER", "LOGNAME"} {
		if u, ok := os.LookupEnv(env); ok {
			return u
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "NO_USER"
}

// sendSPA builds the packet o asks for, saves and prints it as asked,
// and sends it unless in test mode.
func sendSPA(ctx context.Context, o *spaOptions, stdout io.Writer, now time.Time) error {
	if o.access == "" {
		return errors.New("no ports to open: give -A PROTO/PORT (tcp/22,udp/53)")
	}
	allow := o.allowIP
	switch {
	case o.source:
		allow = "0.0.0.0"
	case allow == "" && o.ssh:
		allow = "0.0.0.0" // an SSH-signed knock asks for its source by default
	case allow == "":
		return errors.New("give the address to allow with -a, or -s to allow the packet's source")
	default:
		a, err := netip.ParseAddr(allow)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("-a %q: not an IP address", allow)
		}
		allow = a.Unmap().String()
	}
	if o.dest == "" && !o.test {
		return errors.New("give the server with -D HOST (or use -T to only build the packet)")
	}
	if o.port < 1 || o.port > 65535 {
		return fmt.Errorf("server port %d: want 1-65535", o.port)
	}
	if o.fwTimeout > spa.MaxClientTimeout {
		return fmt.Errorf("-f %d: at most %d seconds", o.fwTimeout, spa.MaxClientTimeout)
	}
	r := spaRequest{Allow: allow, Access: o.access, User: o.user, Timestamp: now.Unix() + int64(o.offset)}
	if r.User == "" {
		r.User = spaUser()
	}
	if o.fwTimeout > 0 {
		r.Timeout = o.fwTimeout
	}
	mode, err := spaModeFor(o)
	if err != nil {
		return err
	}
	if o.dest != "" {
		if r.Server, err = resolveSPA(ctx, o.family, o.dest, uint16(o.port)); err != nil {
			return err
		}
	}
	var verbose io.Writer
	if o.verbose > 0 || o.test {
		verbose = stdout
	}
	pkt, err := mode.packet(r, verbose)
	if err != nil {
		return err
	}
	if o.savePacket != "" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if o.appendSave {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(o.savePacket, flags, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(append(mode.saved(pkt), '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("saving the packet: %w", err)
		}
	}
	if o.test {
		fmt.Fprintln(stdout, "test mode: the packet was not sent")
		return nil
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Server))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(pkt); err != nil {
		return fmt.Errorf("sending to %s: %w", r.Server, err)
	}
	if o.verbose > 0 {
		fmt.Fprintf(stdout, "sent %d bytes over udp to %s\n", len(pkt), r.Server)
	}
	return nil
}

// resolveSPA returns host's first address of the family ("udp", "udp4"
// or "udp6", from -4 and -6) with port.
func resolveSPA(ctx context.Context, family, host string, port uint16) (netip.AddrPort, error) {
	network := map[string]string{"udp": "ip", "udp4": "ip4", "udp6": "ip6"}[family]
	if network == "" {
		network = "ip"
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-D %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("-D %s: no %s address", host, strings.TrimPrefix(family, "udp"))
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), port), nil
}
