package config

import (
	"errors"
	"fmt"

	"github.com/sesame-knock/sesame/core/onetime"
)

// loadOneTime gives each one-time door its current sequence. An
// unreadable or unwritable file is an error at the door's line; a file
// with nothing left disables the door with a warning, so that a reload
// for an unrelated edit does not fail because one door ran out.
func (c *Config) loadOneTime() error {
	var errs []error
	for _, d := range c.Doors {
		if d.OneTimeFile == "" {
			continue
		}
		f, err := onetime.Open(d.OneTimeFile)
		switch {
		case errors.Is(err, onetime.ErrExhausted):
			d.Disabled = true
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: door %q: %s: no more sequences left, door disabled", d.File, d.KeyLine(KeyOneTimeSequences), d.Name, d.OneTimeFile))
		case err != nil:
			errs = append(errs, &Error{File: d.File, Line: d.KeyLine(KeyOneTimeSequences), Msg: fmt.Sprintf("door %q: %v", d.Name, err)})
			continue
		default:
			d.Sequence = f.Current()
		}
		for _, s := range f.Skipped {
			c.Warnings = append(c.Warnings, fmt.Sprintf("door %q: skipped unparsable one-time sequence %s", d.Name, s))
		}
		f.Close()
	}
	return errors.Join(errs...)
}
