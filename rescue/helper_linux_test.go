package rescue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
)

// helperEnv names the environment variable that turns the test binary
// into a stand-in daemon: it starts the rescue, says "ready", then
// refreshes the heartbeat every Interval until it is killed, reporting
// each heartbeat it set on stderr (beatPrefix). Tests run it inside a
// namespace and SIGKILL or SIGSTOP it.
const helperEnv = "SESAME_RESCUE_HELPER"

// helperConfig is what the stand-in daemon is told.
type helperConfig struct {
	Kind  string
	Ports string
	After time.Duration
	From  []string
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		if err := runHelper(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(raw string) error {
	var hc helperConfig
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		return err
	}
	kind, err := firewall.ParseKind(hc.Kind)
	if err != nil {
		return err
	}
	ports, err := knock.ParsePortList(hc.Ports)
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "helper", Output: os.Stderr, Level: hclog.Debug})
	spec := firewall.RescueSpec{Ports: ports, After: hc.After}
	for _, f := range hc.From {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return err
		}
		spec.From = append(spec.From, p)
	}
	fw, err := firewall.NewRescue(kind, spec, log)
	if err != nil {
		return err
	}
	s := New(reportBeats{Firewall: fw, out: os.Stderr}, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	Keep(ctx, func() *Switch { return s }, func() (bool, string) { return true, "" })
	return nil
}

// beatPrefix starts the line the stand-in writes to stderr for each
// heartbeat it set, followed by two CLOCK_MONOTONIC readings in
// nanoseconds: just before the firewall call started and just after it
// returned. The kernel committed the heartbeat in between.
const beatPrefix = "rescue-test heartbeat "

// reportBeats is the stand-in's Firewall: core/firewall's Rescue, with
// every heartbeat it sets (Refresh, and Close, which refreshes too)
// reported to out, so that a test can tell a product fault from a
// stand-in that was too slow to refresh in time. Only calls that
// succeeded are reported; lines are written in the order of the calls
// (the Switch serialises them), one write each.
type reportBeats struct {
	Firewall
	out io.Writer
}

func (r reportBeats) Refresh(ctx context.Context) error { return r.report(ctx, r.Firewall.Refresh) }
func (r reportBeats) Close(ctx context.Context) error   { return r.report(ctx, r.Firewall.Close) }

func (r reportBeats) report(ctx context.Context, call func(context.Context) error) error {
	start := monotonic()
	if err := call(ctx); err != nil {
		return err
	}
	end := monotonic()
	fmt.Fprintf(r.out, "%s%d %d\n", beatPrefix, start, end)
	return nil
}

// monotonic reads CLOCK_MONOTONIC, the clock the stand-in and the test
// share (network namespaces do not change it).
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Linux always has CLOCK_MONOTONIC; without it nothing here
		// can be judged.
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return time.Duration(ts.Nano())
}
