package eventlog

import (
	"errors"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

// sent is one journal.Send call the fake journald recorded.
type sent struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

// fakeJournald replaces send and enabled for the test; fail makes sends
// fail while it is set.
type fakeJournald struct {
	mu   sync.Mutex
	got  []sent
	fail bool
}

func useFakeJournald(t *testing.T, reachable bool) *fakeJournald {
	t.Helper()
	fj := &fakeJournald{}
	oldSend, oldEnabled := send, enabled
	t.Cleanup(func() { send, enabled = oldSend, oldEnabled })
	enabled = func() bool { return reachable }
	send = func(msg string, pri journal.Priority, fields map[string]string) error {
		fj.mu.Lock()
		defer fj.mu.Unlock()
		if fj.fail {
			return errors.New("fake journald down")
		}
		cp := make(map[string]string, len(fields))
		for k, v := range fields {
			cp[k] = v
		}
		fj.got = append(fj.got, sent{msg, pri, cp})
		return nil
	}
	return fj
}

func (fj *fakeJournald) take() []sent {
	fj.mu.Lock()
	defer fj.mu.Unlock()
	got := fj.got
	fj.got = nil
	return got
}

func (fj *fakeJournald) setFail(b bool) {
	fj.mu.Lock()
	fj.fail = b
	fj.mu.Unlock()
}
