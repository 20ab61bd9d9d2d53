package preflight

import (
	"errors"
	"strings"

	"github.com/sesame-knock/sesame/core/config"
)

// errNoInterface is sys.link's answer for a name no interface has.
var errNoInterface = errors.New("no such interface")

// interfaces checks the interfaces sesamed will capture on. A missing or
// down interface is a warning: sesamed starts without it and captures
// on it once it appears or comes up.
func (c *checker) interfaces() {
	names := c.opts.Interfaces
	w := where{file: "command line", flag: "-i " + strings.Join(names, ",")}
	if len(names) == 0 {
		names = c.cfg.Options.Interfaces
		w = where{file: c.cfg.File, line: c.cfg.Options.Lines.Of(config.KeyInterface)}
	}
	if len(names) == 0 {
		names = sys.defaultInterfaces()
		if len(names) == 0 {
			names = []string{config.DefaultInterface}
			c.warnf(w, "no Interface set and no default route: sesamed listens on %s", config.DefaultInterface)
		} else {
			c.notef("no Interface set: sesamed listens on %s (the default route's)", strings.Join(names, ","))
		}
	}
	c.r.Interfaces = names
	for _, n := range names {
		up, err := sys.link(n)
		switch {
		case errors.Is(err, errNoInterface):
			c.warnf(w, "interface %s does not exist (yet): sesamed starts without it and captures on it once it appears", n)
		case err != nil:
			c.warnf(w, "cannot check interface %s: %v", n, err)
		case !up:
			c.warnf(w, "interface %s is down: knocks on it count once it is up", n)
		}
	}
}
