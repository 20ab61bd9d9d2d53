package e2e

import (
	"regexp"
	"syscall"
)

var (
	sigHUP      = syscall.SIGHUP
	timestampRE = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d\] `)
)
