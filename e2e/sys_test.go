package e2e

import (
	"regexp"
	"syscall"
)

var (
	sigHUP      = syscall.SIGHUP
	sigTERM     = syscall.SIGTERM
	timestampRE = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d\] `)
)
