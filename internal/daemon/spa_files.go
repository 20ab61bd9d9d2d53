package daemon

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/sshknock"
)

// spaFiles is what a config's SPA settings and files say: fwknop's
// access.conf (SPA_Access) and the authorized_keys of SSH-signed knocks
// (SPA_Authorized_Keys), parsed, with the port and the maximum age.
// Read-only once loaded.
type spaFiles struct {
	access *access.Config // nil without SPA_Access
	keys   *sshknock.Keys // nil without SPA_Authorized_Keys
	port   uint16
	maxAge time.Duration
}

// loadSPA reads the SPA files cfg names. Outcomes: nil, nil when SPA is
// off; the files; or an error naming each problem's file and line (the
// config's line when a file cannot be read at all).
func loadSPA(cfg *config.Config) (*spaFiles, error) {
	o := &cfg.Options
	if !o.SPA() {
		return nil, nil
	}
	f := &spaFiles{port: o.SPAPort, maxAge: o.SPAMaxAge}
	var errs []error
	if o.SPAAccess != "" {
		a, err := access.Load(o.SPAAccess)
		if err != nil {
			errs = append(errs, fileError(cfg, config.KeySPAAccess, o.SPAAccess, err))
		}
		f.access = a
	}
	if o.SPAAuthorizedKeys != "" {
		k, err := sshknock.LoadKeys(o.SPAAuthorizedKeys)
		if err != nil {
			errs = append(errs, fileError(cfg, config.KeySPAAuthorizedKeys, o.SPAAuthorizedKeys, err))
		}
		f.keys = k
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// fileError is err as the reason cfg's key at its line cannot be used:
// the file's own file:line errors as they are, a file that cannot be
// read as a config error.
func fileError(cfg *config.Config, k config.Key, path string, err error) error {
	var ae *access.Error
	var le *sshknock.LineError
	if errors.As(err, &ae) || errors.As(err, &le) {
		return err // the file's own file:line errors, joined
	}
	return &config.Error{File: cfg.File, Line: cfg.Options.Lines.Of(k), Msg: fmt.Sprintf("%s %s: %v", k, path, err)}
}

// guarded is every port the SPA files let a packet open: the stanzas'
// OPEN_PORTS and the keys' open=. A stanza without OPEN_PORTS may open
// any port; those cannot be listed (see unguarded).
func (f *spaFiles) guarded() []knock.Port {
	if f == nil {
		return nil
	}
	var out []knock.Port
	if f.access != nil {
		for _, st := range f.access.Stanzas {
			out = append(out, st.OpenPorts...)
		}
	}
	if f.keys != nil {
		for _, k := range f.keys.List {
			out = append(out, k.Open...)
		}
	}
	slices.SortFunc(out, func(a, b knock.Port) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Num) - int(b.Num)
	})
	return slices.Compact(out)
}

// unguarded names the stanzas without OPEN_PORTS: with nftables, whose
// table guards only the ports it is told, a grant of another port
// changes nothing unless the admin's ruleset accepts it for everyone.
func (f *spaFiles) unguarded() []string {
	if f == nil || f.access == nil {
		return nil
	}
	var out []string
	for _, st := range f.access.Stanzas {
		if st.OpenPorts == nil {
			out = append(out, st.Name()+" ("+st.Where()+")")
		}
	}
	return out
}

// allGuarded is every port cfg's doors and SPA files may open: what the
// firewall backend guards.
func allGuarded(cfg *config.Config, f *spaFiles) []knock.Port {
	ps := append(guardedPorts(cfg), f.guarded()...)
	slices.SortFunc(ps, func(a, b knock.Port) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Num) - int(b.Num)
	})
	return slices.Compact(ps)
}
