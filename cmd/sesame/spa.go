package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
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

	// --ssh: a knock signed with an SSH key instead of fwknop's format.
	ssh        bool
	identity   string     // -i KEYFILE; "" signs through ssh-agent
	keyQuery   string     // --key: the agent key by comment or fingerprint
	serverAddr netip.Addr // --server-addr: the address named in the packet
	stderr     io.Writer  // where a key file's passphrase prompt goes when there is no terminal
}

func defaultSPAOptions() spaOptions {
	return spaOptions{port: 62201, fwTimeout: -1, family: "udp"}
}

// spaMode makes the datagram for a request: fwknop's Rijndael+HMAC
// format (the default), or a knock signed with an SSH key (--ssh).
type spaMode interface {
	packet(r spaRequest, verbose io.Writer) ([]byte, error)
	// saved is what -B writes for pkt: text, one packet per line.
	saved(pkt []byte) []byte
}

// spaRequest is what every mode puts in a packet.
type spaRequest struct {
	Allow     string // the address to open for; 0.0.0.0 asks for the packet's source
	Access    string // "tcp/22,udp/53"
	Timeout   int    // seconds; 0 lets the server decide
	User      string
	Timestamp int64
	// Server is where the packet goes (the destination resolved); the
	// zero value with -T and no -D.
	Server netip.AddrPort
}

func spaModeFor(o *spaOptions) (spaMode, error) {
	if o.ssh {
		return sshMode{o}, nil
	}
	return fwknopMode{o}, nil
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
		ssh                                                       bool
		identity, keyQuery, serverAddr                            string
	}
	c := &cobra.Command{
		Use:   "spa -A PROTO/PORT[,...] (-a ADDR | -s) -D HOST [--ssh [-i KEYFILE | --key KEY]] [options]",
		Short: "Send a Single Packet Authorization packet, like fwknop's client, or one signed with an SSH key",
		Long: "Send one fwknop SPA packet (Rijndael-encrypted, HMAC-authenticated UDP, fwknop 2.6's wire format) asking HOST " +
			"to open the ports in -A for the address in -a, or for the packet's source with -s. It reads fwknop's flags and " +
			"~/.fwknoprc stanzas ([default], then -n NAME, then the command line), so fwknop scripts and keys carry over; " +
			"IPv6 destinations and IPv6 -a addresses work (fwknopd 2.6 itself takes IPv4 only). No external service is " +
			"contacted: fwknop's -R (ask a web site for your address) is not supported, give -a instead.\n\n" +
			"With --ssh the packet is signed with an SSH key that sesamed lists in its SPA_Authorized_Keys, instead of " +
			"fwknop's shared keys: the key comes from ssh-agent (SSH_AUTH_SOCK; agent-held and hardware keys, which blink for a touch), " +
			"--key picks one of several agent keys by comment or SHA256: fingerprint, and -i KEYFILE signs with a private key file " +
			"(its passphrase is asked on the terminal). The same flags apply (-A, -a, -s, -D, -p, -f, -B, -T, -4, -6, -v); " +
			"without -a the packet asks for its source.",
		Example: "  sesame spa --key-gen\n" +
			"  sesame spa -A tcp/22 -a 198.51.100.7 -D server.example.com --key-base64-rijndael KEY --key-base64-hmac HMACKEY --use-hmac\n" +
			"  sesame spa -n myserver -s\n" +
			"  sesame spa --ssh -A tcp/22 -D server.example.com\n" +
			"  sesame spa --ssh -i ~/.ssh/id_ed25519 -A tcp/22,tcp/443 -D 2001:db8::1 -f 60",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if cli.resolve {
				return exitError{1, "error: -R is not supported: Sesame contacts no external service to learn your address; give it with -a (or -s)"}
			}
			if cli.keyGen {
				return spaKeyGen(stdout, cli.hmacType)
			}
			if f.Changed("allow-ip") && f.Changed("source-ip") && cli.source {
				return exitError{1, "error: -a and -s exclude each other"}
			}
			if !cli.ssh {
				for _, name := range []string{"identity", "key", "server-addr"} {
					if f.Changed(name) {
						return exitError{1, fmt.Sprintf("error: --%s needs --ssh (it picks the SSH key that signs)", name)}
					}
				}
			} else {
				for _, name := range []string{"key-rijndael", "key-base64-rijndael", "key-base64-hmac", "use-hmac", "hmac-digest-type", "digest-type", "encryption-mode", "spoof-user"} {
					if f.Changed(name) {
						return exitError{1, fmt.Sprintf("error: --%s is fwknop's: an SSH-signed knock has no shared keys nor user name (the key's comment names you)", name)}
					}
				}
			}
			o := defaultSPAOptions()
			o.ssh, o.identity, o.keyQuery, o.stderr = cli.ssh, cli.identity, cli.keyQuery, stderr
			if cli.serverAddr != "" {
				a, err := netip.ParseAddr(cli.serverAddr)
				if err != nil {
					return exitError{1, "error: --server-addr: " + err.Error()}
				}
				o.serverAddr = a.Unmap()
			}
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
	f.BoolVar(&cli.ssh, "ssh", false, "sign the packet with an SSH key (ssh-agent, or -i) instead of fwknop's shared keys")
	f.StringVarP(&cli.identity, "identity", "i", "", "with --ssh: sign with the private key in `KEYFILE` instead of ssh-agent")
	f.StringVar(&cli.keyQuery, "key", "", "with --ssh: the agent key with this comment or SHA256: fingerprint (`KEY`)")
	f.StringVar(&cli.serverAddr, "server-addr", "", "with --ssh: name `ADDR` as the server's address in the packet (its public address behind NAT)")
	for _, hidden := range []string{"resolve-ip-https", "no-save-args"} {
		_ = f.MarkHidden(hidden)
	}
	return c
}
