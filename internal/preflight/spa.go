package preflight

import (
	"errors"

	"github.com/sesame-knock/sesame/core/config"
	spaaccess "github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/core/sshknock"
)

// spa checks the SPA files the config names as sesamed reads them:
// fwknop's access.conf (SPA_Access: GnuPG stanzas, command messages and
// NAT settings are refused) and the authorized_keys of SSH-signed knocks
// (SPA_Authorized_Keys), each problem with its file and line; that the
// unit lets sesamed see them; and that nobody but root can change them
// (whoever can write them decides who gets in).
func (c *checker) spa() {
	o := c.cfg.Options
	if o.SPAAccess != "" {
		w := c.option(config.KeySPAAccess, "", "")
		if c.spaReadable(w, "SPA_Access", o.SPAAccess) {
			a, err := spaaccess.Load(o.SPAAccess)
			c.fileErrors(w, "SPA_Access", o.SPAAccess, err)
			if a != nil {
				c.r.Warnings = append(c.r.Warnings, a.Warnings...)
				c.notef("SPA_Access %s: %d fwknop stanzas, packets on %d/udp", o.SPAAccess, len(a.Stanzas), o.SPAPort)
			}
		}
	}
	if o.SPAAuthorizedKeys != "" {
		w := c.option(config.KeySPAAuthorizedKeys, "", "")
		if c.spaReadable(w, "SPA_Authorized_Keys", o.SPAAuthorizedKeys) {
			ks, err := sshknock.LoadKeys(o.SPAAuthorizedKeys)
			c.fileErrors(w, "SPA_Authorized_Keys", o.SPAAuthorizedKeys, err)
			if ks != nil {
				c.notef("SPA_Authorized_Keys %s: %d SSH keys, knocks on %d/udp", o.SPAAuthorizedKeys, len(ks.List), o.SPAPort)
			}
		}
	}
}

// spaReadable checks that the unit lets sesamed read path, and who may
// change it; false when the file cannot be parsed here either.
func (c *checker) spaReadable(w where, key, path string) bool {
	abs := absPath(path)
	if sb := c.opts.Sandbox; sb != nil {
		if ok, why := sb.Readable(abs); !ok {
			c.errorf(w, "%s %s is %s under %s: sesamed cannot read it; put it in /etc (for example /etc/sesame)", key, path, why, sb.Name())
			return false
		}
	}
	if c.root {
		if err := sys.trustPath(abs); err != nil {
			c.warnf(w, "%s %s: %v: whoever can change it decides who gets in", key, path, err)
		}
	}
	return true
}

// fileErrors reports a SPA file's errors: its own lines' problems as
// they are, a file that cannot be read at the config's line.
func (c *checker) fileErrors(w where, key, path string, err error) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ae *spaaccess.Error
		var le *sshknock.LineError
		switch {
		case errors.As(e, &ae):
			c.r.Errors = append(c.r.Errors, &config.Error{File: ae.File, Line: ae.Line, Msg: ae.Msg})
		case errors.As(e, &le):
			c.r.Errors = append(c.r.Errors, &config.Error{File: le.File, Line: le.Line, Msg: le.Err.Error()})
		default:
			c.errorf(w, "%s %s: %v", key, path, e)
		}
	}
}
