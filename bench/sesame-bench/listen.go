package main

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"
)

// listenCmd serves the protected port in the server namespace: it accepts
// and closes every connection, so a completed handshake is all a knocker
// sees. It prints "listening" once the socket is open.
func listenCmd(stdout io.Writer) *cobra.Command {
	var port uint16
	c := &cobra.Command{
		Use:   "listen",
		Short: "Accept and close TCP connections on the protected port until stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lc net.ListenConfig
			ln, err := lc.Listen(cmd.Context(), "tcp", fmt.Sprintf("[::]:%d", port))
			if err != nil {
				return err
			}
			go func() { <-cmd.Context().Done(); ln.Close() }()
			fmt.Fprintln(stdout, "listening")
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return nil
					}
					return err
				}
				c.Close()
			}
		},
	}
	c.Flags().Uint16Var(&port, "port", 2222, "`PORT` to listen on (IPv4 and IPv6)")
	return c
}
