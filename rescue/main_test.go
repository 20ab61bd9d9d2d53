package rescue

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/knock"
)

// helperEnv names the environment variable that turns the test binary
// into a stand-in daemon: it starts the rescue, says "ready", then
// refreshes the heartbeat every Interval until it is killed. Tests run it
// inside a namespace and SIGKILL or SIGSTOP it.
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
	s := New(fw, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	Keep(ctx, func() *Switch { return s }, func() (bool, string) { return true, "" })
	return nil
}
