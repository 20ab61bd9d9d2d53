package systemdtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sesame-knock/sesame/supervisor"
)

// The test binary doubles as the service the booted systemd runs: with
// SESAME_SDHELPER set it runs runHelper instead of the tests. Copied into
// the namespace with Files{Source: os.Executable()}.
const helperEnv = "SESAME_SDHELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// helperPort is where the "listen" mode accepts connections.
const helperPort = 7777

// runHelper is a small Type=notify daemon built from the supervisor
// package: a worker that beats, a health-gated watchdog, READY=1 after
// start, RELOADING=1/READY=1 around each SIGHUP, STOPPING=1 on SIGTERM.
//
// With SDHELPER_STALL_ONCE=PATH and PATH absent, it creates PATH and its
// worker stops beating after a second, so systemd's watchdog kills it; the
// restarted process finds PATH and stays healthy. Mode "listen" also
// greets TCP clients on helperPort.
func runHelper(mode string) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "sdhelper", Output: os.Stdout, Level: hclog.Debug})
	n := supervisor.NewNotifier(log)
	hb := supervisor.NewHeartbeats()
	worker := hb.Register("worker", 500*time.Millisecond)

	stall := false
	if marker := os.Getenv("SDHELPER_STALL_ONCE"); marker != "" {
		if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				fmt.Println("sdhelper: cannot write marker:", err)
				return 1
			}
			stall = true
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	go func() {
		start := time.Now()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		hung := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if stall && time.Since(start) > time.Second {
					if !hung {
						fmt.Println("sdhelper: worker hung")
						hung = true
					}
					continue
				}
				worker.Beat()
			}
		}
	}()
	go func() {
		if err := supervisor.NewWatchdog(n, hb, log).Run(ctx); err != nil {
			fmt.Println("sdhelper: watchdog:", err)
		}
	}()
	if mode == "listen" {
		ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", helperPort))
		if err != nil {
			fmt.Println("sdhelper: listen:", err)
			return 1
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
				c.Close()
			}
		}()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := n.Status("serving"); err != nil {
		fmt.Println("sdhelper:", err)
	}
	if err := n.Ready(); err != nil {
		fmt.Println("sdhelper:", err)
		return 1
	}
	fmt.Println("sdhelper: ready, pid", os.Getpid())
	for reloads := 1; ; reloads++ {
		select {
		case <-ctx.Done():
			n.Stopping()
			fmt.Println("sdhelper: stopping")
			return 0
		case <-hup:
			if err := n.Reloading(); err != nil {
				fmt.Println("sdhelper:", err)
			}
			fmt.Println("sdhelper: reloading", reloads)
			if d, err := time.ParseDuration(os.Getenv("SDHELPER_RELOAD_TAKES")); err == nil {
				time.Sleep(d) // a slow reload, to see whether systemctl reload waits for READY=1
			}
			n.Status(fmt.Sprintf("serving, reloaded %d times", reloads))
			n.Ready()
			fmt.Println("sdhelper: reloaded", reloads)
		}
	}
}
