package capture

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/netnstest"
)

// Where the kernel refuses eBPF, a capture runs the classic filter and
// says why. These tests make the kernel refuse it for real, in a child
// process (the test binary again) started in a fresh namespace: once
// without CAP_BPF and CAP_SYS_ADMIN (as under a unit whose bounding set
// lacks them), once with bpf(2) denied by a seccomp filter (as systemd's
// SystemCallFilter= does).

const (
	childEnv  = "SESAME_FALLBACK_CHILD"  // "nocaps" or "seccomp": run as the child
	expectEnv = "SESAME_FALLBACK_EXPECT" // the filter kind the child must get
)

func TestCaptureFallsBackToClassic(t *testing.T) {
	netnstest.RequireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := []string{exe, "-test.run=^TestClassicFallbackChild$", "-test.v", "-test.count=1"}
	// Without capabilities eBPF socket filters are refused unless the
	// host lets unprivileged users load them.
	unpriv, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err != nil {
		t.Fatal(err)
	}
	noCaps := FilterClassic
	if strings.TrimSpace(string(unpriv)) == "0" {
		noCaps = FilterEBPF
	}
	for _, tc := range []struct {
		name, mode string
		argv       []string
		want       FilterKind
	}{
		{"without CAP_BPF and CAP_SYS_ADMIN", "nocaps",
			append([]string{"setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon", "--"}, child...), noCaps},
		{"bpf denied by seccomp", "seccomp", child, FilterClassic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.NewNS(t, "fallback")
			cmd := ns.Command(tc.argv...)
			cmd.Env = append(os.Environ(), childEnv+"="+tc.mode, expectEnv+"="+tc.want.String())
			out, err := cmd.CombinedOutput()
			t.Logf("child:\n%s", out)
			if err != nil || !strings.Contains(string(out), "--- PASS: TestClassicFallbackChild") {
				t.Fatalf("child failed: %v", err)
			}
		})
	}
}

// TestClassicFallbackChild is the child of TestCaptureFallsBackToClassic;
// it runs only as that, in the namespace the parent made.
func TestClassicFallbackChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("helper process of TestCaptureFallsBackToClassic")
	}
	if mode == "seccomp" {
		if err := denyBPFSyscall(); err != nil {
			t.Fatalf("seccomp: %v", err)
		}
	}
	want := os.Getenv(expectEnv)
	lo4 := netip.MustParseAddr("127.0.0.1")
	h, err := Open("lo", FilterSpec{Dsts: []netip.Addr{lo4}, Ports: []knock.Port{{Num: 7000, Proto: knock.TCP}}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer h.Close()
	st := h.Stats()
	t.Logf("filter %s, %d instructions, exact %v; eBPF: %v", st.Filter, st.FilterInstructions, st.FilterExact, st.EBPFErr)
	if st.Filter.String() != want {
		t.Fatalf("filter %s, want %s", st.Filter, want)
	}
	if st.Filter == FilterClassic && !errors.Is(st.EBPFErr, unix.EPERM) {
		t.Fatalf("eBPF refused with %v, want EPERM", st.EBPFErr)
	}
	// The capture works: a knock on lo arrives.
	got := make(chan knock.Packet, 16)
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background(), func(p knock.Packet) { got <- p }, nil) }()
	deadline := time.After(waitFor)
	for {
		dialLocal(lo4, 7000)
		select {
		case p := <-got:
			if p.Port != 7000 || p.Dst != lo4 {
				t.Fatalf("delivered %v", p)
			}
			h.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return
		case <-deadline:
			t.Fatal("no knock delivered")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dialLocal sends a SYN to addr:port in this process's namespace.
func dialLocal(addr netip.Addr, port uint16) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.Connect(fd, &unix.SockaddrInet4{Port: int(port), Addr: addr.As4()})
}

// denyBPFSyscall makes bpf(2) fail with EPERM in every thread of this
// process, with a seccomp filter as systemd installs for
// SystemCallFilter= (with SystemCallErrorNumber=EPERM).
func denyBPFSyscall() error {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_BPF, SkipFalse: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	})
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return errno
	}
	return nil
}
