package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sesame-knock/sesame/core/config"
	"github.com/sesame-knock/sesame/core/knock"
	"github.com/sesame-knock/sesame/internal/configwatch"
	"github.com/sesame-knock/sesame/internal/trust"
)

// firstConfig checks the state directory and reads the config to start
// with (see loadAtStart), with the command line's overrides.
func firstConfig(opts Options) (content []byte, cfg *config.Config, cfgErr, err error) {
	// The state directory's content runs commands as root (an overdue
	// grant's stop command, the last good config): refuse one anybody
	// else could have written, before reading anything from it.
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("state directory: %w", err)
	}
	if err := trust.Tree(opts.StateDir); err != nil {
		return nil, nil, nil, fmt.Errorf("state directory: %w", err)
	}
	content, cfg, cfgErr, err = loadAtStart(opts)
	if err != nil {
		return nil, nil, nil, err
	}
	if opts.PidFile != "" {
		cfg.Options.PidFile = opts.PidFile
	}
	if opts.LogFile != "" {
		cfg.Options.LogFile = opts.LogFile
	}
	return content, cfg, cfgErr, nil
}

// loadAtStart reads the config for the first start. An invalid config
// falls back to the last good one, which a bad edit followed by a crash
// or reboot must not keep the door keeper down without; cfgErr then says
// why the config file was not used. Without a last good config (a first
// start), or when it is invalid too, err is the config's error: sesamed
// exits 1 rather than run a daemon with no doors that reports itself
// started.
func loadAtStart(opts Options) (content []byte, cfg *config.Config, cfgErr, err error) {
	content, _, cfgErr = configwatch.Read(opts.ConfigPath)
	if cfgErr == nil {
		if cfg, cfgErr = config.LoadBytes(opts.ConfigPath, content); cfgErr == nil {
			return content, cfg, nil, nil
		}
	}
	path := lastGoodPath(opts.StateDir)
	good, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("%w (no last good config to fall back on: %s does not exist)", cfgErr, path)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (last good config unreadable: %w)", cfgErr, err)
	}
	if cfg, err = config.LoadBytes(path, good); err != nil {
		return nil, nil, nil, fmt.Errorf("%w (the last good config %s is invalid too: %w)", cfgErr, path, err)
	}
	return nil, cfg, cfgErr, nil
}

func lastGoodPath(stateDir string) string { return filepath.Join(stateDir, "last-good.conf") }

// saveLastGood keeps content as the config to fall back to when the file
// is invalid at the next start.
func (d *daemon) saveLastGood(content []byte) {
	path := lastGoodPath(d.opts.StateDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		d.log.Warn("cannot save the last good config", "error", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		d.log.Warn("cannot save the last good config", "error", err)
	}
}

// guardedPorts is every port a door of cfg opens natively.
func guardedPorts(cfg *config.Config) []knock.Port {
	seen := map[knock.Port]bool{}
	var out []knock.Port
	for _, d := range cfg.Doors {
		for _, p := range d.Open {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// optionError locates err, a failure to use the global option k, at what
// set it: the command line's flag when override is set, else the config's
// line (0 when k was left at its default).
func optionError(cfg *config.Config, k config.Key, flag, override string, err error) error {
	if override != "" {
		return &config.Error{File: "command line", Msg: flag + " " + override + ": " + err.Error()}
	}
	return &config.Error{File: cfg.File, Line: cfg.Options.Lines.Of(k), Msg: err.Error()}
}
