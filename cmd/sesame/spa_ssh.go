package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sesame-knock/sesame/core/sshknock"
)

// spaSSHCmd is `sesame spa-ssh`: a knock signed with an SSH key (issue 14).
// The logic is sshknock.Client's; this file only maps fwknop-style flags
// onto it and asks for a key file's passphrase on the terminal.
func spaSSHCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		access, allow, serverAddr, identity, keyQuery, save string
		dest                                                string
		port                                                uint16
		timeout                                             uint32
		useSource, v4, v6, verbose, dryRun                  bool
	)
	c := &cobra.Command{
		Use:   "spa-ssh -A PROTO/PORT,... -D HOST [-a ADDR|-s] [-i KEYFILE|--key KEY] [flags]",
		Short: "Send a knock signed with an SSH key (ssh-agent or key file)",
		Long: "Send one UDP packet asking HOST to open ports for this host (or -a ADDR), signed with an SSH key that the server lists " +
			"in its SPA_Authorized_Keys file. The key comes from ssh-agent (SSH_AUTH_SOCK; hardware keys blink for a touch), " +
			"or from -i KEYFILE (its passphrase is asked on the terminal). The flags are fwknop's.",
		Example: "  sesame spa-ssh -A tcp/22 -D server.example.com\n  sesame spa-ssh -A tcp/22,tcp/443 -D 2001:db8::1 -6 -i ~/.ssh/id_ed25519 -f 60",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl := sshknock.Client{Destination: dest, Port: port, SavePacket: save, DryRun: dryRun, Timeout: time.Duration(timeout) * time.Second}
			var err error
			if access == "" || dest == "" {
				return exitError{1, "error: -A PROTO/PORT,... and -D HOST are required"}
			}
			if cl.Ports, err = sshknock.ParseAccess(access); err != nil {
				return exitError{1, "error: -A: " + err.Error()}
			}
			switch {
			case v4 && v6:
				return exitError{1, "error: -4 and -6 exclude each other"}
			case v4:
				cl.Network = "ip4"
			case v6:
				cl.Network = "ip6"
			}
			if allow != "" {
				if useSource {
					return exitError{1, "error: -a and -s exclude each other"}
				}
				if cl.Allow, err = netip.ParseAddr(allow); err != nil {
					return exitError{1, "error: -a: " + err.Error()}
				}
			}
			if serverAddr != "" {
				if cl.ServerAddr, err = netip.ParseAddr(serverAddr); err != nil {
					return exitError{1, "error: --server-addr: " + err.Error()}
				}
			}
			if verbose {
				cl.Verbose = stdout
			}
			signer, closer, err := sshknock.ChooseSigner(identity, keyQuery, os.Getenv("SSH_AUTH_SOCK"), askPassphrase(identity, stderr))
			if err != nil {
				return exitError{1, err.Error()}
			}
			defer closer.Close()
			cl.Signer = signer
			if _, err := cl.Knock(cmd.Context(), rand.Reader, time.Now()); err != nil {
				return exitError{1, err.Error()}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&access, "access", "A", "", "ports to open, `PROTO/PORT,...` (e.g. tcp/22,udp/53)")
	f.StringVarP(&allow, "allow-ip", "a", "", "open for `ADDR` instead of this packet's source")
	f.BoolVarP(&useSource, "source-ip", "s", false, "open for the packet's source address (the default)")
	f.StringVarP(&dest, "destination", "D", "", "the server, `HOST` name or address")
	f.Uint16VarP(&port, "server-port", "p", sshknock.DefaultPort, "the server's SPA `PORT` (udp)")
	f.Uint32VarP(&timeout, "fw-timeout", "f", 0, "keep the ports open `SECONDS` (0: the key's timeout=)")
	f.StringVarP(&save, "save-packet", "B", "", "write the packet (base64) to `FILE`")
	f.BoolVarP(&dryRun, "test", "T", false, "build the packet but do not send it")
	f.BoolVarP(&v4, "ipv4", "4", false, "use IPv4")
	f.BoolVarP(&v6, "ipv6", "6", false, "use IPv6")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the packet's fields")
	f.StringVarP(&identity, "identity", "i", "", "sign with the private key in `KEYFILE` instead of ssh-agent")
	f.StringVar(&keyQuery, "key", "", "pick the agent key with this comment or SHA256: fingerprint (`KEY`)")
	f.StringVar(&serverAddr, "server-addr", "", "name `ADDR` as the server's address in the packet (its public address behind NAT)")
	return c
}

// askPassphrase returns a prompt for identity's passphrase on the
// controlling terminal, or nil when there is none (then an encrypted key
// file is an error that says so).
func askPassphrase(identity string, stderr io.Writer) func() ([]byte, error) {
	return func() ([]byte, error) {
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("the key is encrypted and there is no terminal to ask its passphrase (use ssh-agent): %w", err)
		}
		defer tty.Close()
		fmt.Fprintf(tty, "Enter passphrase for %s: ", identity)
		pw, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return pw, err
	}
}
