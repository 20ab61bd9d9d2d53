package preflight

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/fleet"
)

// fleetTimeout bounds `sesame check`'s question to etcd.
const fleetTimeout = 5 * time.Second

// fleet checks the fleet keys beyond their syntax (package config did
// that): the node's name, the TLS files (readable, under the unit's
// sandbox too, a certificate that goes with its key), and one read from
// the group's etcd. Credentials etcd refuses are an error at the line of
// the key to fix; an etcd that does not answer is a warning, since
// sesamed starts without it and its local doors work.
func (c *checker) fleet(ctx context.Context) {
	fc := c.cfg.Options.Fleet
	if !fc.Enabled() {
		return
	}
	at := func(key string) where {
		if k, ok := fleetKey(key); ok && c.cfg.Options.Lines.Of(k) > 0 {
			return c.option(k, "", "")
		}
		return c.option(config.KeyFleetEndpoints, "", "")
	}
	fc, err := fc.WithDefaults(sys.hostname)
	if err != nil {
		c.fleetError(at, err)
		return
	}
	if c.cfg.Options.Lines.Of(config.KeyFleetNode) == 0 {
		c.notef("Fleet_Node is not set: this host is %s in fleet group %s", fc.Node, fc.Group)
	}
	if sb := c.opts.Sandbox; sb != nil {
		for _, kv := range [][2]string{{fleet.KeyCA, fc.CA}, {fleet.KeyCert, fc.Cert}, {fleet.KeyKey, fc.Key}} {
			if kv[1] == "" {
				continue
			}
			if ok, why := sb.Readable(kv[1]); !ok {
				c.errorf(at(kv[0]), "%s %s is %s under %s: sesamed cannot read it; keep it below /etc/sesame", kv[0], kv[1], why, sb.Name())
				return
			}
		}
	}
	if _, err := fc.TLSConfig(); err != nil {
		c.fleetError(at, err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	switch err := sys.fleet(cctx, fc); {
	case err == nil:
		c.notef("fleet group %s: etcd answers at %s", fc.Group, strings.Join(fc.Endpoints, ","))
	case errors.Is(err, fleet.ErrTLS):
		// The message names the keys to look at; blame the certificate's
		// line, or the CA's when it is the server that is not trusted.
		key := fleet.KeyCert
		if strings.Contains(err.Error(), "check "+fleet.KeyCA) {
			key = fleet.KeyCA
		}
		c.errorf(at(key), "%v", err)
	default:
		c.warnf(at(fleet.KeyEndpoints), "%v: sesamed starts without it (local doors work) and shares grants once etcd answers", err)
	}
}

// fleetError reports a *fleet.ConfigError at its key's line.
func (c *checker) fleetError(at func(string) where, err error) {
	var ce *fleet.ConfigError
	if errors.As(err, &ce) {
		c.errorf(at(ce.Key), "%v", err)
		return
	}
	c.errorf(at(fleet.KeyEndpoints), "%v", err)
}

func fleetKey(name string) (config.Key, bool) {
	for _, k := range []config.Key{config.KeyFleetEndpoints, config.KeyFleetGroup, config.KeyFleetNode,
		config.KeyFleetCA, config.KeyFleetCert, config.KeyFleetKey} {
		if k.String() == name {
			return k, true
		}
	}
	return 0, false
}

// checkFleet makes one quorum read of the group's prefix.
func checkFleet(ctx context.Context, c fleet.Config) error {
	f, err := fleet.New(c, fleet.Options{DialTimeout: fleetTimeout, ProbeTimeout: fleetTimeout})
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Check(ctx)
}
