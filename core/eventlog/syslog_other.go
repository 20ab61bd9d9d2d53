//go:build !linux

package eventlog

import (
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Sesame's daemon runs on Linux; elsewhere syslog is not offered.
type syslogSink struct{}

var syslogIsJournald = func() bool { return false }

func newSyslogSink(string, func() time.Time, func(string, ...any)) (*syslogSink, error) {
	return &syslogSink{}, errors.ErrUnsupported
}

func (*syslogSink) Accept(string, hclog.Level, string, ...any) {}
func (*syslogSink) close() error                               { return nil }
