package preflight

import (
	"errors"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/sesame-knock/sesame/internal/trust"
	"golang.org/x/sys/unix"
)

func access(path string, mode uint32) error { return unix.Access(path, mode) }

func link(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, errNoInterface
	}
	if err != nil {
		return false, err
	}
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown, nil
}

func trustTree(dir string) error { return trust.Tree(dir) }

func trustPath(path string) error { return trust.Path(path) }
