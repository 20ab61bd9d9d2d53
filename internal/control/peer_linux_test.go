package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/internal/netnstest"
)

// serveEnv makes the test binary a control server on the abstract socket
// it names (no file system permissions needed), for a test that runs it
// as another user.
const serveEnv = "SESAME_CONTROL_TEST_SERVE"

func TestMain(m *testing.M) {
	if name := os.Getenv(serveEnv); name != "" {
		ln, err := net.Listen("unix", name)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		Serve(context.Background(), ln, &fakeHandler{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A process of another user serving the protocol (here: nobody) is not
// believed, with the client's default: root only.
func TestClientRefusesANonRootDaemon(t *testing.T) {
	netnstest.RequireRoot(t)
	name := fmt.Sprintf("@sesame-control-test-%d", os.Getpid())
	// A copy of the test binary nobody can reach (the build directory is
	// root's alone).
	dir, err := os.MkdirTemp("", "sesame-control-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := dir + "/control.test"
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), serveEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("server as nobody: %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server as nobody did not start")
	}
	_, err = NewClient(name).Status(context.Background())
	if !errors.Is(err, ErrUntrustedPeer) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("Status from a daemon run by nobody: %v, want ErrUntrustedPeer naming uid 65534", err)
	}
}
