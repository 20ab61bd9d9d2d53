package preflight

import (
	"context"
	"os"

	"github.com/sesame-knock/sesame/core/firewall"
	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/internal/netmon"
)

// system is what the checks ask the machine; tests swap sys.
type system struct {
	euid func() int
	// access is access(2) with mode bits W_OK=2, X_OK=1.
	access func(path string, mode uint32) error
	// link reports whether an interface is up; errNoInterface when there
	// is none of that name.
	link func(name string) (up bool, err error)
	// defaultInterfaces names the interfaces of the default routes.
	defaultInterfaces func() []string
	detect            func(ctx context.Context) (firewall.Kind, string, error)
	backend           func(firewall.Kind) error
	rescue            func(firewall.Kind, firewall.RescueSpec) error
	// trustTree is package trust's check of the state directory,
	// trustPath its check of a file and the directories above it.
	trustTree func(dir string) error
	trustPath func(path string) error
	// knockd describes the knockd processes that run.
	knockd func() []string
	// hostname is the host's name (the fleet node's default).
	hostname func() (string, error)
	// fleet asks the group's etcd for one quorum read (fleet.Check).
	fleet func(ctx context.Context, c fleet.Config) error
}

var sys = system{
	euid:              os.Geteuid,
	access:            access,
	trustTree:         trustTree,
	trustPath:         trustPath,
	knockd:            runningKnockd,
	link:              link,
	defaultInterfaces: netmon.DefaultRouteInterfaces,
	detect:            firewall.Detect,
	backend: func(k firewall.Kind) error {
		_, err := firewall.New(k, nil)
		return err
	},
	rescue: func(k firewall.Kind, s firewall.RescueSpec) error {
		_, err := firewall.NewRescue(k, s, nil)
		return err
	},
	hostname: os.Hostname,
	fleet:    checkFleet,
}
