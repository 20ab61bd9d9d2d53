package sshknock

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/sshsig"
)

// Knock is what a client asks a server for.
type Knock struct {
	Server  netip.Addr    // the server address the packet names (the one it is sent to, or its public one behind NAT)
	Allow   netip.Addr    // the address to open for; the zero Addr: the packet's source
	Ports   []knock.Port  // 1 to MaxPorts
	Timeout time.Duration // whole seconds; 0: the key's timeout=
	HashAlg string        // sshsig.HashSHA512 (the default, as ssh-keygen) or HashSHA256
}

// Build makes the datagram for k, stamped now (whole seconds), signed by
// signer in namespace sesame-knock. rand supplies the nonce and whatever
// the signature needs. Signing through an agent may wait for a hardware
// token's touch. The outcomes are the datagram, or an error (bad
// request, signer failure, or ErrTooLarge when the signature would make
// it longer than MaxPacket, as with RSA keys over 8192 bits).
func Build(rand io.Reader, signer ssh.Signer, k Knock, now time.Time) ([]byte, error) {
	p := Packet{
		Fingerprint: FingerprintOf(signer.PublicKey()),
		Time:        time.Unix(now.Unix(), 0),
		Server:      k.Server.Unmap(),
		Allow:       k.Allow.Unmap(),
		Timeout:     k.Timeout,
	}
	if err := p.SetPorts(k.Ports); err != nil {
		return nil, fmt.Errorf("sshknock.Build: %w", err)
	}
	if _, err := io.ReadFull(rand, p.Nonce[:]); err != nil {
		return nil, fmt.Errorf("sshknock.Build: nonce: %w", err)
	}
	body, err := appendBody(make([]byte, 0, MaxPacket), &p)
	if err != nil {
		return nil, fmt.Errorf("sshknock.Build: %w", err)
	}
	return signBody(rand, signer, body, k.HashAlg)
}

// signBody appends the hash algorithm and signer's SSHSIG signature of
// body to it.
func signBody(rand io.Reader, signer ssh.Signer, body []byte, hashAlg string) ([]byte, error) {
	if hashAlg == "" {
		hashAlg = sshsig.HashSHA512
	}
	sig, err := sshsig.Sign(rand, signer, Namespace, hashAlg, body)
	if err != nil {
		return nil, fmt.Errorf("sshknock.Build: %w", err)
	}
	pkt := appendWireString(body[:len(body):len(body)], []byte(hashAlg)) // never write into the caller's array
	pkt = appendWireString(pkt, ssh.Marshal(sig.Sig))
	if len(pkt) > MaxPacket {
		return nil, fmt.Errorf("sshknock.Build: %w: %d bytes with a %s signature (max %d)", ErrTooLarge, len(pkt), sig.Sig.Format, MaxPacket)
	}
	return pkt, nil
}

func appendWireString(b, s []byte) []byte {
	b = append(b, byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// Armor returns the knock's signature in ssh-keygen's armored SSHSIG
// form, for `ssh-keygen -Y verify -n sesame-knock` with the packet's body
// (Packet.Body) as the message. pub is the key the fingerprint names.
func (p *Packet) Armor(pub ssh.PublicKey) ([]byte, error) {
	if FingerprintOf(pub) != p.Fingerprint {
		return nil, fmt.Errorf("sshknock: key %s is not the packet's %s", FingerprintOf(pub), p.Fingerprint)
	}
	sig, err := sshsig.ParseSSHSignature(p.Signature)
	if err != nil {
		return nil, err
	}
	s := &sshsig.Signature{PublicKey: pub, Namespace: Namespace, HashAlg: string(p.HashAlg), Sig: sig}
	return s.Armor(), nil
}

// Send sends pkt to dst in one UDP datagram.
func Send(ctx context.Context, pkt []byte, dst netip.AddrPort) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", dst.String())
	if err != nil {
		return fmt.Errorf("sshknock.Send %s: %w", dst, err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		return fmt.Errorf("sshknock.Send %s: %w", dst, err)
	}
	return nil
}

// DialAgent connects to the ssh-agent at sock (SSH_AUTH_SOCK). Close the
// returned closer when done.
func DialAgent(sock string) (agent.ExtendedAgent, io.Closer, error) {
	if sock == "" {
		return nil, nil, fmt.Errorf("sshknock.DialAgent: SSH_AUTH_SOCK is not set (start ssh-agent, or use -i KEYFILE)")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("sshknock.DialAgent: %w", err)
	}
	return agent.NewClient(c), c, nil
}

// AgentSigner picks the agent key whose comment or SHA-256 fingerprint
// ("SHA256:...") is query; with query empty, the agent's only key. The
// outcomes are the signer and its agent entry; ErrNoKey when nothing
// matches; ErrAmbiguousKey (listing the candidates) when several do.
func AgentSigner(ag agent.ExtendedAgent, query string) (ssh.Signer, *agent.Key, error) {
	keys, err := ag.List()
	if err != nil {
		return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w", err)
	}
	var match []*agent.Key
	for _, k := range keys {
		if query == "" || k.Comment == query || FingerprintOf(k).String() == strings.TrimRight(query, "=") {
			match = append(match, k)
		}
	}
	describe := func(ks []*agent.Key) string {
		var s []string
		for _, k := range ks {
			s = append(s, fmt.Sprintf("%s %s %q", k.Type(), FingerprintOf(k), k.Comment))
		}
		return strings.Join(s, "; ")
	}
	switch {
	case len(keys) == 0:
		return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w: the agent holds no keys (ssh-add one)", ErrNoKey)
	case len(match) == 0:
		return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w: no agent key has comment or fingerprint %q (agent holds: %s)", ErrNoKey, query, describe(keys))
	case len(match) > 1:
		return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w: choose one with --key COMMENT|FINGERPRINT: %s", ErrAmbiguousKey, describe(match))
	}
	signers, err := ag.Signers()
	if err != nil {
		return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w", err)
	}
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), match[0].Marshal()) {
			return s, match[0], nil
		}
	}
	return nil, nil, fmt.Errorf("sshknock.AgentSigner: %w: the agent listed %s but offers no signer for it", ErrNoKey, FingerprintOf(match[0]))
}

// LoadKeyFile reads an OpenSSH private key file. When it is encrypted,
// passphrase is asked for it (nil: encrypted files are an error). FIDO
// (sk-) keys need their token: they sign through ssh-agent instead.
func LoadKeyFile(path string, passphrase func() ([]byte, error)) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sshknock.LoadKeyFile: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == nil {
			return nil, fmt.Errorf("sshknock.LoadKeyFile %s: the key is encrypted and no passphrase can be asked", path)
		}
		pw, perr := passphrase()
		if perr != nil {
			return nil, fmt.Errorf("sshknock.LoadKeyFile %s: %w", path, perr)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(b, pw)
	}
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "sk-") {
			hint = " (FIDO keys sign through ssh-agent: ssh-add the key and leave out -i)"
		}
		return nil, fmt.Errorf("sshknock.LoadKeyFile %s: %w%s", path, err, hint)
	}
	return s, nil
}

// Describe writes the packet's fields, one per line, for `-v`.
func (p *Packet) Describe(w io.Writer) {
	allow := "the packet's source"
	if p.Allow.IsValid() {
		allow = p.Allow.String()
	}
	timeout := "the key's timeout="
	if p.Timeout > 0 {
		timeout = p.Timeout.String()
	}
	fmt.Fprintf(w, "fingerprint:  %s\n", p.Fingerprint)
	fmt.Fprintf(w, "timestamp:    %d (%s)\n", p.Time.Unix(), p.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "nonce:        %x\n", p.Nonce)
	fmt.Fprintf(w, "server:       %s\n", p.Server)
	fmt.Fprintf(w, "allow:        %s\n", allow)
	fmt.Fprintf(w, "ports:        %s\n", FormatAccess(p.Ports()))
	fmt.Fprintf(w, "timeout:      %s\n", timeout)
	fmt.Fprintf(w, "hash:         %s\n", p.HashAlg)
	if sig, err := sshsig.ParseSSHSignature(p.Signature); err == nil {
		fmt.Fprintf(w, "signature:    %s, %d bytes\n", sig.Format, len(p.Signature))
	}
	fmt.Fprintf(w, "packet:       %d bytes (signed body %d)\n", len(p.Body)+8+len(p.HashAlg)+len(p.Signature), len(p.Body))
}

// DefaultPort is SPA_Port's default, fwknop's: 62201/udp.
const DefaultPort = 62201

// Client is one `sesame spa --ssh` invocation, as values.
type Client struct {
	Signer      ssh.Signer
	Destination string        // -D: host name or address
	Port        uint16        // -p: 0 means DefaultPort
	Network     string        // "ip" (either), "ip4" (-4) or "ip6" (-6); "" means "ip"
	Ports       []knock.Port  // -A
	Allow       netip.Addr    // -a; the zero Addr: the packet's source (-s)
	ServerAddr  netip.Addr    // --server-addr: the address to name in the packet; zero: the destination's
	Timeout     time.Duration // -f; 0: the key's timeout=
	SavePacket  string        // -B: write the packet (base64, one line) to this file
	DryRun      bool          // -T: build (and save) but do not send
	Verbose     io.Writer     // -v: describe the packet here; nil: quiet
	Resolver    *net.Resolver // nil: net.DefaultResolver
}

// Knock resolves the destination, builds the knock at now, saves it
// when asked, and sends it. It returns the datagram.
func (c *Client) Knock(ctx context.Context, rand io.Reader, now time.Time) ([]byte, error) {
	dst, err := c.resolve(ctx)
	if err != nil {
		return nil, err
	}
	server := c.ServerAddr
	if !server.IsValid() {
		server = dst.Addr()
	}
	pkt, err := Build(rand, c.Signer, Knock{Server: server, Allow: c.Allow, Ports: c.Ports, Timeout: c.Timeout}, now)
	if err != nil {
		return nil, err
	}
	if c.Verbose != nil {
		pub := c.Signer.PublicKey()
		fmt.Fprintf(c.Verbose, "key:          %s %s\n", pub.Type(), FingerprintOf(pub))
		fmt.Fprintf(c.Verbose, "destination:  %s (udp)\n", dst)
		p, err := Decode(pkt)
		if err != nil {
			return nil, fmt.Errorf("sshknock.Client: the packet just built does not decode: %w", err)
		}
		p.Describe(c.Verbose)
	}
	if c.SavePacket != "" {
		line := base64.StdEncoding.EncodeToString(pkt) + "\n"
		if err := os.WriteFile(c.SavePacket, []byte(line), 0o600); err != nil {
			return nil, fmt.Errorf("sshknock.Client: save packet: %w", err)
		}
	}
	if c.DryRun {
		return pkt, nil
	}
	return pkt, Send(ctx, pkt, dst)
}

// resolve returns the destination's first address of the wanted family.
func (c *Client) resolve(ctx context.Context) (netip.AddrPort, error) {
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	network := c.Network
	if network == "" {
		network = "ip"
	}
	if c.Destination == "" {
		return netip.AddrPort{}, fmt.Errorf("sshknock.Client: no destination (-D)")
	}
	r := c.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, network, c.Destination)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sshknock.Client: resolve %s: %w", c.Destination, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("sshknock.Client: %s has no %s address", c.Destination, network)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), port), nil
}

// ChooseSigner returns the signer `-i FILE` or the agent at authSock
// (picking keyQuery, see AgentSigner) gives. Close the closer after
// signing: an agent signer needs its connection until then.
func ChooseSigner(identity, keyQuery, authSock string, passphrase func() ([]byte, error)) (ssh.Signer, io.Closer, error) {
	if identity != "" {
		if keyQuery != "" {
			return nil, nil, fmt.Errorf("sshknock.ChooseSigner: -i and --key exclude each other (--key picks an agent key)")
		}
		s, err := LoadKeyFile(identity, passphrase)
		if err != nil {
			return nil, nil, err
		}
		return s, nopCloser{}, nil
	}
	ag, closer, err := DialAgent(authSock)
	if err != nil {
		return nil, nil, err
	}
	s, _, err := AgentSigner(ag, keyQuery)
	if err != nil {
		closer.Close()
		return nil, nil, err
	}
	return s, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
