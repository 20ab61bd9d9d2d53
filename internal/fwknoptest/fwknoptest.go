// Package fwknoptest runs Debian's fwknop 2.6.10 (the reference SPA
// client and server) for tests: packets made by the fwknop client at test
// time, pcap files of SPA datagrams, and fwknopd either replaying a pcap
// file in test mode or sniffing a test namespace's interface. fwknopd
// always runs inside a namespace the test created (netnstest), so its
// iptables calls never reach the host's firewall.
package fwknoptest

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/rawsend"
)

// DefaultPort is fwknop's SPA port.
const DefaultPort = 62201

// User is the user name MakePacket's packets carry.
const User = "spauser"

func without(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

// Client returns the path of the fwknop client, failing the test when it
// is not installed (make deps installs it).
func Client(tb testing.TB) string { return need(tb, "fwknop", "fwknop-client") }

// ServerPath returns the path of fwknopd.
func ServerPath(tb testing.TB) string { return need(tb, "fwknopd", "fwknop-server") }

func need(tb testing.TB, bin, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		tb.Fatalf("%s not installed (apt-get install %s, or make deps): %v", bin, pkg, err)
	}
	return p
}

// Packet is one packet the fwknop client made, with the field values it
// printed ("Random Value", "Username", "Timestamp", "Message String",
// "Client Timeout", "Digest Type", "HMAC Type", "Encryption Mode",
// "Encoded Data", "SPA Data Digest", "HMAC", "Final SPA Data", ...).
type Packet struct {
	Data   []byte
	Fields map[string]string
	Output string
}

// MakePacket runs `fwknop -T -v -B FILE --no-rc-file --no-save-args ARGS`
// with a private HOME (the client writes ~/.fwknoprc otherwise) and
// returns the packet it saved and the fields of its first dump.
func MakePacket(tb testing.TB, args ...string) Packet {
	tb.Helper()
	bin := Client(tb)
	dir := tb.TempDir()
	file := filepath.Join(dir, "packet")
	argv := append([]string{"-T", "-v", "-B", file, "--no-rc-file", "--no-save-args"}, args...)
	cmd := exec.Command(bin, argv...)
	// libfko takes the user from SPOOF_USER, then LOGNAME.
	cmd.Env = append(without(os.Environ(), "SPOOF_USER"), "HOME="+dir, "LOGNAME="+User)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("fwknop %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		tb.Fatalf("fwknop wrote no packet: %v\n%s", err, out)
	}
	return Packet{Data: bytes.TrimSpace(data), Fields: ParseDump(string(out)), Output: string(out)}
}

// ParseDump reads the first "SPA Field Values" dump in fwknop's or
// fwknopd's verbose output into a map keyed by the label.
func ParseDump(out string) map[string]string {
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	in := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "SPA Field Values") {
			if in {
				break
			}
			in = true
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			if strings.TrimSpace(line) == "" && len(fields) > 0 {
				break
			}
			continue
		}
		if _, dup := fields[strings.TrimSpace(k)]; dup {
			break
		}
		fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return fields
}

// Datagram is one UDP datagram for a pcap file.
type Datagram struct {
	Src, Dst netip.Addr
	Port     uint16 // destination port; DefaultPort when zero
	Payload  []byte
}

// WritePcap writes datagrams as Ethernet frames into a new pcap file.
func WritePcap(tb testing.TB, path string, dgrams []Datagram) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	for i, d := range dgrams {
		port := d.Port
		if port == 0 {
			port = DefaultPort
		}
		fr, err := rawsend.Frame(rawsend.Spec{SrcIP: d.Src, DstIP: d.Dst, SrcPort: uint16(40000 + i), DstPort: port, Proto: knock.UDP, Payload: d.Payload})
		if err != nil {
			tb.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// WriteConfig writes fwknopd's two config files (mode 0600, as fwknopd
// requires) into dir and returns their paths. conf holds fwknopd.conf
// lines (PCAP_INTF ...;), access the access.conf text.
func WriteConfig(tb testing.TB, dir, conf, access string) (confPath, accessPath string) {
	tb.Helper()
	confPath = filepath.Join(dir, "fwknopd.conf")
	accessPath = filepath.Join(dir, "access.conf")
	for p, text := range map[string]string{confPath: conf, accessPath: access} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return confPath, accessPath
}

// Argv returns fwknopd's command line for running in the foreground with
// every state file under dir.
func Argv(tb testing.TB, dir, confPath, accessPath string, extra ...string) []string {
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		tb.Fatal(err)
	}
	return append([]string{ServerPath(tb), "-f", "-c", confPath, "-a", accessPath,
		"-d", filepath.Join(run, "digest.cache"), "-p", filepath.Join(run, "fwknopd.pid"), "-r", run}, extra...)
}
