package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/sesame-knock/sesame/internal/version"
)

// manExtra is the part of sesamed(8) that is not about flags: signals,
// files and related pages. It is roff appended to cobra's page.
const manExtra = `.SH SIGNALS
.TP
\fBSIGHUP\fP
Re-read the configuration (this is what \fBsystemctl reload sesamed\fP sends). A file with errors is logged and the running configuration is kept.
.TP
\fBSIGTERM\fP, \fBSIGINT\fP
Shut down cleanly. Grants stay in the journal; the next start resumes them and revokes each at its deadline.
.SH FILES
.TP
\fI/etc/sesame/sesame.conf\fP
The configuration, see \fBsesame.conf\fP(5).
.TP
\fI/var/lib/sesame\fP
The grants journal (\fB\-\-state\-dir\fP).
.TP
\fI/run/sesame/control.sock\fP
The control socket \fBsesame grants\fP and \fBsesame revoke\fP use (\fB\-\-socket\fP).
.TP
\fI/usr/lib/systemd/system/sesamed.service\fP
The systemd unit (Type=notify, with a watchdog). Its comments list what its sandbox allows door commands to write.
.SH SEE ALSO
\fBsesame\fP(1), \fBsesame.conf\fP(5), \fBknockd\fP(1), \fBsystemd.exec\fP(5)
`

// addGenMan gives cmd a hidden --gen-man DIR flag that writes sesamed(8)
// into DIR and exits, so the page is generated from the flags that
// parse the command line. `make package` uses it.
func addGenMan(cmd *cobra.Command) {
	var dir string
	cmd.Flags().StringVar(&dir, "gen-man", "", "write the man page into `DIR` and exit")
	_ = cmd.Flags().MarkHidden("gen-man")
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if dir == "" {
			return run(c, args)
		}
		return genMan(c, dir)
	}
}

func genMan(cmd *cobra.Command, dir string) error {
	cmd.DisableAutoGenTag = true
	path := filepath.Join(dir, "sesamed.8")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("gen-man: %w", err)
	}
	hdr := &doc.GenManHeader{Title: "SESAMED", Section: "8", Source: "Sesame " + version.Version, Manual: "System Manager's Manual"}
	err = doc.GenMan(cmd, hdr, f)
	if err == nil {
		_, err = f.WriteString(manExtra)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("gen-man %s: %w", path, err)
	}
	return nil
}
