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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sesame-knock/sesame/core/spa"
)

// spaOptions are `sesame spa`'s settings: fwknop's command line over the
// [default] and -n stanzas of ~/.fwknoprc, over fwknop's defaults.
type spaOptions struct {
	access     string // -A: "tcp/22,udp/53"
	allowIP    string // -a
	source     bool   // -s: ask the server to allow the packet's source
	dest       string // -D
	port       int    // -p
	fwTimeout  int    // -f; -1 when not given
	key        []byte // --key-rijndael / KEY, or decoded --key-base64-rijndael / KEY_BASE64
	hmacKey    []byte
	useHMAC    bool
	hmacType   spa.HashType
	digestType spa.HashType
	mode       spa.Mode
	offset     int // seconds added to the timestamp (plus minus minus)
	user       string
	family     string // "udp4", "udp6" or "udp"
	savePacket string
	appendSave bool
	test       bool
	verbose    int
}

func defaultSPAOptions() spaOptions {
	return spaOptions{port: 62201, fwTimeout: -1, family: "udp"}
}

// spaMode makes the datagram for a request. fwknop's Rijndael+HMAC format
// is the default; another mode (SSH-signed packets) adds its flags in
// spaCmd and a case in spaModeFor.
type spaMode interface {
	packet(r spaRequest, verbose io.Writer) ([]byte, error)
}

// spaRequest is what every mode puts in a packet.
type spaRequest struct {
	Allow     string // the address to open for; 0.0.0.0 asks for the packet's source
	Access    string // "tcp/22,udp/53"
	Timeout   int    // seconds; 0 lets the server decide
	User      string
	Timestamp int64
}

func spaModeFor(o *spaOptions) (spaMode, error) {
	return fwknopMode{o}, nil
}

// fwknopMode is libfko's wire format (package spa).
type fwknopMode struct{ o *spaOptions }

func (m fwknopMode) packet(r spaRequest, verbose io.Writer) ([]byte, error) {
	o := m.o
	if len(o.key) == 0 {
		return nil, errors.New("no Rijndael key: give --key-base64-rijndael or --key-rijndael, or KEY_BASE64 in the rc file (sesame spa --key-gen makes keys)")
	}
	if o.useHMAC && len(o.hmacKey) == 0 {
		return nil, errors.New("--use-hmac without an HMAC key: give --key-base64-hmac, or HMAC_KEY_BASE64 in the rc file")
	}
	k := spa.Keys{Key: o.key, Mode: o.mode, HMAC: o.hmacType}
	if len(o.hmacKey) > 0 {
		if o.mode == spa.Legacy {
			return nil, errors.New("legacy encryption mode cannot be combined with an HMAC (as in fwknop)")
		}
		k.HMACKey = o.hmacKey
	}
	msg := spa.Message{User: r.User, Timestamp: r.Timestamp, Type: spa.AccessMsg,
		Access: r.Allow + "," + r.Access, ClientTimeout: r.Timeout, Digest: o.digestType}
	e, err := spa.Encode(msg, k, nil)
	if err != nil {
		return nil, err
	}
	if verbose != nil {
		dumpFields(verbose, msg, k, e)
	}
	return e.Packet, nil
}

// dumpFields prints a packet the way fwknop -v does, with its labels.
func dumpFields(w io.Writer, m spa.Message, k spa.Keys, e *spa.Encoded) {
	f := strings.Split(e.Fields, ":")
	typ, _ := strconv.Atoi(f[4])
	hmacType := "<NULL>"
	if e.HMAC != "" {
		hmacType = k.HMAC.String()
	}
	timeout := "0"
	if m.ClientTimeout > 0 {
		timeout = strconv.Itoa(m.ClientTimeout)
	}
	fmt.Fprintf(w, "SPA Field Values:\n=================\n")
	for _, kv := range [][2]string{
		{"Random Value", f[0]}, {"Username", m.User}, {"Timestamp", f[2]}, {"FKO Version", f[3]},
		{"Message Type", fmt.Sprintf("%d (%s msg)", typ, spa.MsgType(typ))}, {"Message String", m.Access},
		{"Nat Access", "<NULL>"}, {"Server Auth", "<NULL>"}, {"Client Timeout", timeout},
		{"Digest Type", m.Digest.String()}, {"HMAC Type", hmacType}, {"Encryption Type", "Rijndael"},
		{"Encryption Mode", k.Mode.String()}, {"Encoded Data", e.Fields}, {"SPA Data Digest", e.Digest},
		{"HMAC", e.HMAC}, {"Final SPA Data", string(e.Packet)},
	} {
		fmt.Fprintf(w, "%15s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintln(w)
}

func spaCmd(stdout, stderr io.Writer) *cobra.Command {
	// cli holds the flags as given; the rc file's values are overridden
	// only by the flags the command line sets (Changed).
	var cli struct {
		access, allowIP, dest, user, savePacket                   string
		named, rcFile, key, keyB64, hmacB64, hmacType, digestType string
		mode, proto, plus, minus                                  string
		port, fwTimeout, verbose                                  int
		source, useHMAC, appendSave, test                         bool
		noRC, keyGen, v4, v6, resolve, noSaveArgs                 bool
	}
	c := &cobra.Command{
		Use:   "spa -A PROTO/PORT[,...] (-a ADDR | -s) -D HOST [options]",
		Short: "Send a Single Packet Authorization packet, like fwknop's client",
		Long: "Send one fwknop SPA packet (Rijndael-encrypted, HMAC-authenticated UDP, fwknop 2.6's wire format) asking HOST " +
			"to open the ports in -A for the address in -a, or for the packet's source with -s. It reads fwknop's flags and " +
			"~/.fwknoprc stanzas ([default], then -n NAME, then the command line), so fwknop scripts and keys carry over; " +
			"IPv6 destinations and IPv6 -a addresses work (fwknopd 2.6 itself takes IPv4 only). No external service is " +
			"contacted: fwknop's -R (ask a web site for your address) is not supported, give -a instead.",
		Example: "  sesame spa --key-gen\n" +
			"  sesame spa -A tcp/22 -a 198.51.100.7 -D server.example.com --key-base64-rijndael KEY --key-base64-hmac HMACKEY --use-hmac\n" +
			"  sesame spa -n myserver -s",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if cli.resolve {
				return exitError{1, "error: -R is not supported: Sesame contacts no external service to learn your address; give it with -a (or -s)"}
			}
			if cli.keyGen {
				return spaKeyGen(stdout, cli.hmacType)
			}
			o := defaultSPAOptions()
			if !cli.noRC {
				path, explicit := cli.rcFile, cli.rcFile != ""
				if !explicit {
					if home, err := os.UserHomeDir(); err == nil {
						path = filepath.Join(home, ".fwknoprc")
					}
				}
				if err := loadRC(path, explicit, cli.named, &o); err != nil {
					return exitError{1, "error: " + err.Error()}
				}
			} else if cli.named != "" {
				return exitError{1, "error: -n needs the rc file; it cannot go with --no-rc-file"}
			}
			// The command line wins over the rc file.
			set := func(name string, apply func() error) error {
				if !f.Changed(name) {
					return nil
				}
				if err := apply(); err != nil {
					return exitError{1, fmt.Sprintf("error: --%s: %v", name, err)}
				}
				return nil
			}
			for _, s := range []struct {
				name  string
				apply func() error
			}{
				{"access", func() error { o.access = cli.access; return nil }},
				{"allow-ip", func() error { o.allowIP, o.source = cli.allowIP, false; return nil }},
				{"source-ip", func() error { o.source = cli.source; return nil }},
				{"destination", func() error { o.dest = cli.dest; return nil }},
				{"server-port", func() error { o.port = cli.port; return nil }},
				{"fw-timeout", func() error { o.fwTimeout = cli.fwTimeout; return nil }},
				{"key-rijndael", func() error { o.key = []byte(cli.key); return nil }},
				{"key-base64-rijndael", func() (err error) { o.key, err = decodeB64Key(cli.keyB64); return }},
				{"key-base64-hmac", func() (err error) { o.hmacKey, err = decodeB64Key(cli.hmacB64); o.useHMAC = true; return }},
				{"use-hmac", func() error { o.useHMAC = cli.useHMAC; return nil }},
				{"hmac-digest-type", func() (err error) { o.hmacType, err = spa.ParseHashType(cli.hmacType); return }},
				{"digest-type", func() (err error) { o.digestType, err = spa.ParseHashType(cli.digestType); return }},
				{"encryption-mode", func() (err error) { o.mode, err = spa.ParseMode(cli.mode); return }},
				{"time-offset-plus", func() error { n, err := parseTimeOffset(cli.plus); o.offset += n; return err }},
				{"time-offset-minus", func() error { n, err := parseTimeOffset(cli.minus); o.offset -= n; return err }},
				{"spoof-user", func() error { o.user = cli.user; return nil }},
				{"server-proto", func() error { return checkProto(cli.proto) }},
				{"save-packet", func() error { o.savePacket = cli.savePacket; return nil }},
				{"save-packet-append", func() error { o.appendSave = cli.appendSave; return nil }},
				{"test", func() error { o.test = cli.test; return nil }},
				{"verbose", func() error { o.verbose += cli.verbose; return nil }},
			} {
				if err := set(s.name, s.apply); err != nil {
					return err
				}
			}
			switch {
			case cli.v4 && cli.v6:
				return exitError{1, "error: -4 and -6 exclude each other"}
			case cli.v4:
				o.family = "udp4"
			case cli.v6:
				o.family = "udp6"
			}
			if err := sendSPA(cmd.Context(), &o, stdout, time.Now()); err != nil {
				return exitError{1, "error: " + err.Error()}
			}
			return nil
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVarP(&cli.access, "access", "A", "", "`PROTO/PORT` list to open on the server (tcp/22,udp/53)")
	f.StringVarP(&cli.allowIP, "allow-ip", "a", "", "the `ADDRESS` to allow (IPv4, or IPv6 for Sesame servers)")
	f.BoolVarP(&cli.source, "source-ip", "s", false, "allow whatever source address the packet arrives from")
	f.StringVarP(&cli.dest, "destination", "D", "", "the SPA server's `HOST` name or address")
	f.IntVarP(&cli.port, "server-port", "p", 62201, "the server's SPA `PORT`")
	f.StringVarP(&cli.proto, "server-proto", "P", "udp", "how to send the packet: only udp is supported")
	f.IntVarP(&cli.fwTimeout, "fw-timeout", "f", 0, "ask for access for `SECONDS` (the server caps it at MAX_FW_TIMEOUT)")
	f.StringVarP(&cli.named, "named-config", "n", "", "use the rc file's [`NAME`] stanza over its [default]")
	f.StringVar(&cli.rcFile, "rc-file", "", "the rc `FILE` (default ~/.fwknoprc)")
	f.BoolVar(&cli.noRC, "no-rc-file", false, "do not read an rc file")
	f.StringVar(&cli.key, "key-rijndael", "", "the Rijndael `KEY` (a passphrase; visible to ps)")
	f.StringVar(&cli.keyB64, "key-base64-rijndael", "", "the Rijndael key, base64 (`KEY_BASE64`; visible to ps)")
	f.StringVar(&cli.hmacB64, "key-base64-hmac", "", "the HMAC key, base64 (`HMAC_KEY_BASE64`; visible to ps)")
	f.BoolVar(&cli.useHMAC, "use-hmac", false, "authenticate the packet with an HMAC (fwknopd's HMAC_KEY; Sesame servers require it)")
	f.StringVar(&cli.hmacType, "hmac-digest-type", "sha256", "HMAC `DIGEST`: md5, sha1, sha256, sha384, sha512, sha3_256, sha3_512")
	f.StringVarP(&cli.digestType, "digest-type", "m", "sha256", "the message `DIGEST` (same names)")
	f.StringVarP(&cli.mode, "encryption-mode", "M", "CBC", "Rijndael `MODE`: CBC, ECB, CFB, OFB, CTR, legacy (no HMAC)")
	f.BoolVarP(&cli.keyGen, "key-gen", "k", false, "print a new KEY_BASE64 and HMAC_KEY_BASE64 and exit")
	f.StringVarP(&cli.savePacket, "save-packet", "B", "", "also write the packet to `FILE`")
	f.BoolVarP(&cli.appendSave, "save-packet-append", "b", false, "append to the -B file instead of replacing it")
	f.StringVar(&cli.plus, "time-offset-plus", "", "add `TIME` to the packet's timestamp (N seconds, Nm, Nh, Nd)")
	f.StringVar(&cli.minus, "time-offset-minus", "", "subtract `TIME` from the packet's timestamp")
	f.StringVarP(&cli.user, "spoof-user", "U", "", "the user `NAME` in the packet (default: SPOOF_USER, LOGNAME, your login)")
	f.BoolVarP(&cli.test, "test", "T", false, "build and print the packet, do not send it")
	f.BoolVarP(&cli.v4, "ipv4", "4", false, "send over IPv4")
	f.BoolVarP(&cli.v6, "ipv6", "6", false, "send over IPv6")
	f.CountVarP(&cli.verbose, "verbose", "v", "print the packet's fields")
	f.BoolVarP(&cli.resolve, "resolve-ip-https", "R", false, "not supported (fwknop asks a web site for your address)")
	f.BoolVar(&cli.noSaveArgs, "no-save-args", false, "accepted for fwknop compatibility (Sesame never saves arguments)")
	for _, hidden := range []string{"resolve-ip-https", "no-save-args"} {
		_ = f.MarkHidden(hidden)
	}
	return c
}

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
		_, err = f.Write(append(pkt, '\n'))
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
	var d net.Dialer
	conn, err := d.DialContext(ctx, o.family, net.JoinHostPort(o.dest, strconv.Itoa(o.port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(pkt); err != nil {
		return fmt.Errorf("sending to %s: %w", conn.RemoteAddr(), err)
	}
	if o.verbose > 0 {
		fmt.Fprintf(stdout, "sent %d bytes over udp to %s\n", len(pkt), conn.RemoteAddr())
	}
	return nil
}
