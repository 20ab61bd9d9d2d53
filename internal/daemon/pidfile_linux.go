package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/sesame-knock/sesame/core/config"
)

// writePidFile writes pid to path without following a symlink there, and
// truncates only a plain file that has no other name: a PidFile in a
// directory others can write to must not let them choose which file root
// overwrites (a symlink or a hard link to /etc/shadow).
func writePidFile(path string, pid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("pid file %s is a symbolic link: not writing through it", path)
	}
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("pid file %s is not a regular file (%s): not writing to it", path, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return fmt.Errorf("pid file %s has %d names (a hard link): not writing to it", path, st.Nlink)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	if _, err := f.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	return f.Close()
}

// pidFileService writes the PidFile the config (or -p) names and removes
// it when the daemon stops. A PidFile that cannot be written stops the
// start with its file and line, as `sesame check` refuses it (knockd
// only complains): tools that read it would act on a stale or missing
// pid.
func (d *daemon) pidFileService() hook {
	var written string
	return hook{name: "pid file", start: func(context.Context) error {
		pf := d.config().Options.PidFile
		if pf == "" {
			return nil
		}
		if err := writePidFile(pf, os.Getpid()); err != nil {
			return optionError(d.config(), config.KeyPidFile, "-p", d.opts.PidFile, err)
		}
		written = pf
		return nil
	}, stop: func(context.Context) error {
		if written == "" {
			return nil
		}
		return os.Remove(written)
	}}
}
