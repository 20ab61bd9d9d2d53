package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// SPA end to end: sesamed with SPA_Access (fwknop's access.conf) and
// SPA_Authorized_Keys in the server namespace, whose firewall drops the
// protected port; Debian's fwknop client and `sesame spa` (also --ssh)
// in the client namespace.

const spaPort = 62201

// Keys shared by sesamed's access.conf and the clients (32 and 64 bytes,
// as fwknop --key-gen makes them).
var (
	spaKeyB64  = base64.StdEncoding.EncodeToString([]byte("e2e rijndael key, 32 bytes long!"))
	spaHMACB64 = base64.StdEncoding.EncodeToString([]byte("e2e hmac key: sixty-four bytes of it, which is what fwknop makes"))
	spaKeyArgs = []string{"--key-base64-rijndael", spaKeyB64, "--key-base64-hmac", spaHMACB64, "--use-hmac"}
	// Another pair, for a second stanza or a wrong key.
	otherKeyB64  = base64.StdEncoding.EncodeToString([]byte("another rijndael key, 32 bytes.."))
	otherHMACB64 = base64.StdEncoding.EncodeToString([]byte("another hmac key, sixty-four bytes long, for a second stanza!!!!"))
)

// spaStanza is an access.conf stanza with the test keys that opens the
// protected port, plus extra lines.
func spaStanza(source string, extra ...string) string {
	return "SOURCE " + source + "\nOPEN_PORTS tcp/2222\nKEY_BASE64 " + spaKeyB64 + "\nHMAC_KEY_BASE64 " + spaHMACB64 +
		"\nFW_ACCESS_TIMEOUT 30\n" + strings.Join(extra, "\n") + "\n"
}

// spaServer is sesamed with SPA files in a server namespace whose
// firewall (backend's) drops the protected port.
type spaServer struct {
	t       testing.TB
	p       *netnstest.Pair
	d       *proc
	dir     string
	conf    string
	backend string
}

// startSPA writes the SPA files (access and keys, "" for none) into a
// new directory and starts sesamed on them.
func startSPA(t testing.TB, backend, access, keys string) *spaServer {
	t.Helper()
	p := netnstest.NewPair(t)
	lockDown(t, p.Server, backend)
	listen(t, p.Server)
	s := &spaServer{t: t, p: p, dir: t.TempDir(), backend: backend}
	s.conf = fmt.Sprintf("[options]\n\tInterface = %s\n\tFirewall = %s\n\tReconcile_Interval = 1\n", netnstest.ServerIf, backend)
	if access != "" {
		s.write("access.conf", access)
		s.conf += "\tSPA_Access = {{DIR}}/access.conf\n"
	}
	if keys != "" {
		s.write("authorized_keys", keys)
		s.conf += "\tSPA_Authorized_Keys = {{DIR}}/authorized_keys\n"
	}
	s.start()
	return s
}

func (s *spaServer) write(name, text string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *spaServer) start() {
	s.t.Helper()
	s.d = startSesamedIn(s.t, s.p.Server, s.dir, s.conf)
	s.d.waitLog("SPA on 62201/udp", 10*time.Second)
}

// restart stops sesamed cleanly and starts it again on the same state.
func (s *spaServer) restart() {
	s.t.Helper()
	s.d.stop()
	s.start()
}

// reach reports whether the client connects to the protected port of
// server (an address of the server namespace).
func (s *spaServer) reach(server netip.Addr) bool { return connects(s.p.Client, netip.Addr{}, server) }

// opens waits until the client connects to the protected port.
func (s *spaServer) opens(server netip.Addr, why string) {
	s.t.Helper()
	if !poll(10*time.Second, func() bool { return s.reach(server) }) {
		s.t.Fatalf("%s: port %d on %s still closed; sesamed:\n%s", why, protected, server, s.d.out.String())
	}
}

// count is how many lines of sesamed's output hold every part.
func (s *spaServer) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(s.d.out.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// waitLine waits until n lines hold every part.
func (s *spaServer) waitLine(n int, parts ...string) {
	s.t.Helper()
	s.waitLineWithin(10*time.Second, n, parts...)
}

func (s *spaServer) waitLineWithin(d time.Duration, n int, parts ...string) {
	s.t.Helper()
	if !poll(d, func() bool { return s.count(parts...) >= n }) {
		s.t.Fatalf("no %d lines with %q; sesamed:\n%s", n, parts, s.d.out.String())
	}
}

// sesameSpa runs `sesame spa ARGS` in the client namespace (no rc file,
// HOME a fresh directory) and returns its output; a non-zero exit fails
// the test.
func (s *spaServer) sesameSpa(env []string, args ...string) string {
	s.t.Helper()
	cmd := s.p.Client.Command(append([]string{bin("sesame"), "spa", "--no-rc-file"}, args...)...)
	cmd.Env = append(append(os.Environ(), "HOME="+s.t.TempDir()), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("sesame spa %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sendUDP sends payload from the client namespace to server's SPA port.
func (s *spaServer) sendUDP(server netip.Addr, payload []byte) {
	s.t.Helper()
	if err := s.p.Client.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, spaPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
}

// grantLine matches sesamed's "access granted" lines.
var grantLine = regexp.MustCompile(`access granted: .*event=grant`)

func (s *spaServer) grants() int { return len(grantLine.FindAllString(s.d.out.String(), -1)) }

// flooder sends frames from the client namespace to the server at a
// fixed rate, cycling through them, until stopped.
type flooder struct {
	stop chan struct{}
	done chan error
	sent atomic.Uint64
	rate int
}

// flood starts sending frames at rate packets per second with
// sendmmsg batches (rawsend.Bulk), paced per batch.
func flood(t testing.TB, p *netnstest.Pair, frames [][]byte, rate int) *flooder {
	t.Helper()
	f := &flooder{stop: make(chan struct{}), done: make(chan error, 1), rate: rate}
	const batch = 32
	go func() {
		f.done <- p.Client.Do(func() error {
			tx, err := rawsend.OpenBulk(netnstest.ClientIf, batch)
			if err != nil {
				return err
			}
			defer tx.Close()
			start := time.Now()
			var n uint64
			for i := 0; ; i += batch {
				select {
				case <-f.stop:
					return nil
				default:
				}
				b := make([][]byte, 0, batch)
				for j := 0; j < batch; j++ {
					b = append(b, frames[(i+j)%len(frames)])
				}
				k, err := tx.SendBatch(b)
				if err != nil {
					return err
				}
				n += uint64(k)
				f.sent.Store(n)
				if wait := time.Until(start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))); wait > 0 {
					select {
					case <-f.stop:
						return nil
					case <-time.After(wait):
					}
				}
			}
		})
	}()
	t.Cleanup(func() { f.halt(t) })
	return f
}

// halt stops the flood and reports the rate it kept.
func (f *flooder) halt(t testing.TB) {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	if err := <-f.done; err != nil {
		t.Errorf("flood: %v", err)
	}
}

// udpFrames returns one frame per payload, UDP to the server's SPA port,
// each from a source that source(i) picks.
func udpFrames(t testing.TB, p *netnstest.Pair, payloads [][]byte, source func(i int) netip.Addr) [][]byte {
	t.Helper()
	_, mac := rawsend.ForPair(t, p)
	out := make([][]byte, len(payloads))
	for i, pl := range payloads {
		src := source(i)
		dst := netnstest.ServerAddr4
		if src.Is6() {
			dst = netnstest.ServerAddr6
		}
		fr, err := rawsend.Frame(rawsend.Spec{DstMAC: mac, SrcIP: src, DstIP: dst, SrcPort: uint16(20000 + i%40000),
			DstPort: spaPort, Proto: knock.UDP, Payload: pl})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = fr
	}
	return out
}

// spoofed is the i-th of n sources outside every test subnet: the
// server has no route back, so it answers none of them.
func spoofed(i, n int) netip.Addr {
	i %= n
	return netip.AddrFrom4([4]byte{10, 78, byte(i >> 8), byte(i)})
}

// garbage is n random payloads of fwknop's alphabet and size.
func garbage(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 160)
		rand.Read(b)
		out[i] = []byte(base64.RawStdEncoding.EncodeToString(b))
	}
	return out
}
