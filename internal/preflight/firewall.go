package preflight

import (
	"context"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/firewall"
)

// firewall checks that the firewall native grants (Open) and the rescue
// port need is there: for Firewall = auto, what core/firewall's detection
// finds (it refuses rules in several firewalls); for a named one, that
// its tools are installed. It only reads the firewall.
func (c *checker) firewall(ctx context.Context) {
	o := c.cfg.Options
	var open *config.Door
	for _, d := range c.cfg.Doors {
		if len(d.Open) > 0 {
			open = d
			break
		}
	}
	rescue := len(o.RescuePorts) > 0
	spa := o.SPA() // SPA grants are native too
	if (open == nil && !rescue && !spa) || !c.root {
		return
	}
	w := where{file: c.cfg.File, line: o.Lines.Of(config.KeyFirewall)}
	switch {
	case w.line > 0:
	case open != nil:
		w = c.door(open, config.KeyOpen)
	case spa:
		w.line = max(o.Lines.Of(config.KeySPAAccess), o.Lines.Of(config.KeySPAAuthorizedKeys))
	default:
		w.line = o.Lines.Of(config.KeyRescuePorts)
	}
	kind, err := firewall.ParseKind(o.Firewall)
	if err != nil {
		c.errorf(w, "%v", err)
		return
	}
	if kind == firewall.Auto {
		k, detail, err := sys.detect(ctx)
		if err != nil {
			c.errorf(w, "Firewall = auto: %v", err)
			return
		}
		c.notef("Firewall = auto finds %s (%s)", k, detail)
		kind = k
	}
	if open != nil || spa {
		if err := sys.backend(kind); err != nil {
			c.errorf(w, "Firewall = %s: %v", kind, err)
			return
		}
	}
	if rescue {
		spec := firewall.RescueSpec{Ports: o.RescuePorts, From: o.RescueFrom, After: o.RescueAfter}
		if err := sys.rescue(kind, spec); err != nil {
			c.errorf(where{file: c.cfg.File, line: o.Lines.Of(config.KeyRescuePorts)}, "Rescue_Ports in %s: %v", kind, err)
		}
	}
}
