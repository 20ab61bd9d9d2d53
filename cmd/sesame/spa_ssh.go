package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/sesame-knock/sesame/core/sshknock"
)

// sshMode is `sesame spa --ssh`: a knock signed with an SSH key (issue
// 14), through ssh-agent or a key file. The packet and the signing are
// package sshknock's; this maps fwknop's flags onto a sshknock.Knock.
type sshMode struct{ o *spaOptions }

func (m sshMode) packet(r spaRequest, verbose io.Writer) ([]byte, error) {
	o := m.o
	ports, err := sshknock.ParseAccess(r.Access)
	if err != nil {
		return nil, fmt.Errorf("-A: %w", err)
	}
	k := sshknock.Knock{Server: o.serverAddr, Ports: ports, Timeout: time.Duration(r.Timeout) * time.Second}
	if !k.Server.IsValid() {
		k.Server = r.Server.Addr()
	}
	if !k.Server.IsValid() {
		return nil, errors.New("the packet names the server's address: give -D HOST or --server-addr ADDR")
	}
	if a := netip.MustParseAddr(r.Allow); !a.IsUnspecified() {
		k.Allow = a
	}
	signer, closer, err := sshknock.ChooseSigner(o.identity, o.keyQuery, os.Getenv("SSH_AUTH_SOCK"), askPassphrase(o.identity, o.stderr))
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	pkt, err := sshknock.Build(rand.Reader, signer, k, time.Unix(r.Timestamp, 0))
	if err != nil {
		return nil, err
	}
	if verbose != nil {
		pub := signer.PublicKey()
		fmt.Fprintf(verbose, "key:          %s %s\n", pub.Type(), sshknock.FingerprintOf(pub))
		if r.Server.IsValid() {
			fmt.Fprintf(verbose, "destination:  %s (udp)\n", r.Server)
		}
		p, err := sshknock.Decode(pkt)
		if err != nil {
			return nil, fmt.Errorf("the packet just built does not decode: %w", err)
		}
		p.Describe(verbose)
	}
	return pkt, nil
}

// saved: an SSH-signed knock is binary; -B writes it in base64.
func (sshMode) saved(pkt []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(pkt))
}

// askPassphrase returns a prompt for identity's passphrase on the
// controlling terminal; without one, the error says to use ssh-agent.
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
