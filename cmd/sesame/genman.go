package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/sesame-knock/sesame/internal/version"
)

// genManCmd writes sesame(1) and a page per subcommand (sesame-knock(1),
// ...) into DIR, from the same cobra tree that parses the command line,
// so the man pages cannot drift from the flags. `make package` runs it;
// it is hidden because users never need it.
func genManCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages into DIR (used by make package)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The completion command is added when the tree executes, which
			// is before this runs, so it gets its pages too.
			root.DisableAutoGenTag = true
			// No Title: cobra titles each page for its command
			// (SESAME-KNOCK), which man -k and the page's header show.
			hdr := &doc.GenManHeader{Section: "1", Source: "Sesame " + version.Version, Manual: "Sesame Manual"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("gen-man %s: %w", args[0], err)
			}
			return nil
		},
	}
}
