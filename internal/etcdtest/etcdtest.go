// Package etcdtest runs real etcd servers (Debian's etcd-server, 3.4) for
// tests: a cluster of one or more members on loopback addresses, each
// with a temporary data directory, killed by pid when the test ends. It
// also makes TLS certificates at test time (PKI) and a TCP proxy that
// can cut a client off (Proxy). It never touches an etcd it did not
// start.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server the tests run.
const Binary = "/usr/bin/etcd"

// StartTimeout bounds how long a cluster may take to elect a leader and
// serve: etcd's election timeout is 1 s by default; a loaded 2-core
// machine starting three members needs far less than this.
const StartTimeout = 60 * time.Second

// Require fails the test when etcd is not installed (make deps installs
// etcd-server).
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(Binary); err != nil {
		tb.Fatalf("%s not found (apt-get install etcd-server, or make deps): %v", Binary, err)
	}
}

// Options configure a cluster.
type Options struct {
	Members int  // default 1
	TLS     *PKI // serve clients over mutual TLS with these certificates
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	pki     *PKI
	tb      testing.TB
}

// Member is one etcd process.
type Member struct {
	Name      string
	Addr      string // loopback address it listens on
	ClientURL string
	PeerURL   string
	Dir       string
	logPath   string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
}

// Start starts a cluster and waits until every member serves.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	Require(tb)
	if opts.Members <= 0 {
		opts.Members = 1
	}
	c := &Cluster{pki: opts.TLS, tb: tb}
	base := tb.TempDir()
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	for i := range opts.Members {
		addr := freeAddr(tb)
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			Addr:      addr,
			ClientURL: scheme + "://" + net.JoinHostPort(addr, "2379"),
			PeerURL:   "http://" + net.JoinHostPort(addr, "2380"),
			Dir:       filepath.Join(base, fmt.Sprintf("m%d", i)),
		}
		c.Members = append(c.Members, m)
	}
	var initial []string
	for _, m := range c.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := fmt.Sprintf("sesame-test-%d-%d", os.Getpid(), rand.Int64())
	tb.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
		if tb.Failed() {
			for _, m := range c.Members {
				tb.Logf("etcd member %s (%s) log tail:\n%s", m.Name, m.ClientURL, m.LogTail(30))
			}
		}
	})
	for _, m := range c.Members {
		args := []string{
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap", "--log-outputs", "stderr",
		}
		if opts.TLS != nil {
			cert, key := opts.TLS.ServerCert(tb, m.Addr)
			args = append(args, "--cert-file", cert, "--key-file", key,
				"--client-cert-auth", "--trusted-ca-file", opts.TLS.CAFile)
		}
		m.start(tb, args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for _, m := range c.Members {
		if err := c.waitServing(ctx, m); err != nil {
			tb.Fatalf("etcd member %s did not start serving: %v\n%s", m.Name, err, m.LogTail(30))
		}
	}
	return c
}

func (m *Member) start(tb testing.TB, args []string) {
	tb.Helper()
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	m.logPath = filepath.Join(m.Dir, "..", m.Name+".log")
	logf, err := os.Create(m.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal to the test's group does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("start %s: %v", Binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
}

// Kill kills the member by pid (SIGKILL) and waits for it. It is safe to
// call twice.
func (m *Member) Kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Alive reports whether the process is still running.
func (m *Member) Alive() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// LogTail returns the last n lines the member logged.
func (m *Member) LogTail(n int) string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns an admin client of the cluster (for the test to
// compact, inspect or change keys behind the code under test), closed at
// cleanup.
func (c *Cluster) Client(tb testing.TB, endpoints ...string) *clientv3.Client {
	tb.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: c.clientTLS(tb), Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) clientTLS(tb testing.TB) *tls.Config {
	if c.pki == nil {
		return nil
	}
	return c.pki.ClientTLS(tb, "admin")
}

func (c *Cluster) waitServing(ctx context.Context, m *Member) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 2 * time.Second, TLS: c.clientTLS(c.tb), Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		if !m.Alive() {
			return fmt.Errorf("the process exited")
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(rctx, "/health-probe")
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr picks a random loopback address whose client and peer ports
// are free, so concurrent test runs (and other users of 127.0.0.1:2379)
// do not collide.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 1+rand.IntN(254))
		ok := true
		for _, port := range []string{"2379", "2380"} {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return addr
		}
	}
	tb.Fatal("no free loopback address for etcd")
	return ""
}
