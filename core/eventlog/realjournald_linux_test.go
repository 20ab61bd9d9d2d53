package eventlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/event"
)

const journaldBin = "/lib/systemd/systemd-journald"

// realJournaldScript runs inside a fresh PID and mount namespace (mounts
// private): tmpfs on /run and /var/log/journal hides the host's journal,
// systemd-journald binds /run/systemd/journal/{socket,stdout,dev-log}
// there, the helper logs natively, then again with stderr on journald's
// stream transport and JOURNAL_STREAM naming it (as systemd sets it for a
// service), and the journal is dumped as JSON. When the shell (PID 1 of
// the namespace) exits, the kernel kills journald with it; --kill-child
// kills the shell if unshare itself is killed.
const realJournaldScript = `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
# Keep journald away from the host's persistent journal, should it flush.
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal
` + journaldBin + ` >/dev/null 2>&1 &
i=0
while [ ! -S /run/systemd/journal/socket ] || [ ! -S /run/systemd/journal/stdout ] || [ ! -S /run/systemd/journal/dev-log ]; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "journald did not start" >&2; exit 1; }
  sleep 0.1
done
SESAME_EVENTLOG_HELPER=native "$0" -test.run='^TestRealJournaldHelper$' -test.count=1 >&2
systemd-cat -t sesame-stream-run sh -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) SESAME_EVENTLOG_HELPER=stream exec "$0" -test.run="^TestRealJournaldHelper$" -test.count=1' "$0"
# journald writes asynchronously; --sync waits until it has flushed.
journalctl --sync
journalctl -D /run/log/journal -o json --no-pager
`

// TestRealJournald checks the journald sink, the syslog sink and the
// no-duplicates rule against a real systemd-journald in a throw-away
// namespace.
func TestRealJournald(t *testing.T) {
	if os.Getenv("SESAME_EVENTLOG_HELPER") != "" {
		t.Skip("helper")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to unshare PID and mount namespaces and run journald (CI runs as root)")
	}
	for _, tool := range []string{"unshare", "journalctl", "systemd-cat", "stat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
	if _, err := os.Stat(journaldBin); err != nil {
		t.Skipf("skipping: %s missing (apt-get install systemd): %v", journaldBin, err)
	}
	nonce := fmt.Sprintf("%d", time.Now().UnixNano())
	cmd := exec.Command("timeout", "120", "unshare", "--fork", "--kill-child", "--pid", "--mount", "--mount-proc", "--propagation", "private",
		"sh", "-c", realJournaldScript, os.Args[0])
	cmd.Env = append(os.Environ(), "SESAME_NONCE="+nonce)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("namespace run: %v\nstderr:\n%s", err, stderr.String())
	}
	var entries []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journalctl JSON: %v: %s", err, sc.Text())
		}
		entries = append(entries, e)
	}
	find := func(msg string) []map[string]any {
		var found []map[string]any
		for _, e := range entries {
			if e["MESSAGE"] == msg+" "+nonce {
				found = append(found, e)
			}
		}
		return found
	}
	tests := []struct {
		msg    string
		fields map[string]string
	}{
		{"10.0.0.2: ssh: OPEN SESAME", map[string]string{
			"_TRANSPORT": "journal", "PRIORITY": "5", "SYSLOG_IDENTIFIER": "sesamed", "SYSLOG_FACILITY": "3",
			"SESAME_EVENT": "open", "SESAME_DOOR": "ssh", "SESAME_SOURCE": "10.0.0.2",
		}},
		{"ssh: running command: /bin/true 10.0.0.2", map[string]string{
			"_TRANSPORT": "journal", "PRIORITY": "5", "SESAME_EVENT": "grant", "SESAME_GRANT_ID": "0123abcd",
			"SESAME_DEADLINE": "2026-11-27T21:00:00Z", "SESAME_EXIT_CODE": "0", "SESAME_LOGGER": "sesamed.grant",
		}},
		{"rescue port opened", map[string]string{"_TRANSPORT": "journal", "PRIORITY": "4", "SESAME_EVENT": "rescue-open"}},
		{"config: reload failed", map[string]string{"_TRANSPORT": "journal", "PRIORITY": "4", "SESAME_ERROR": "line 3: bad port"}},
		// knockd's lines through the syslog sink, into journald's /dev/log.
		{"10.0.0.2: ssh: Stage 1", map[string]string{
			"_TRANSPORT": "syslog", "PRIORITY": "5", "SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "sesamed",
		}},
		// The stream run: exactly one copy, the native one.
		{"stream run: 10.0.0.3: ssh: OPEN SESAME", map[string]string{
			"_TRANSPORT": "journal", "PRIORITY": "5", "SESAME_EVENT": "open",
		}},
	}
	for _, tt := range tests {
		var matching int
		for _, e := range find(tt.msg) {
			if e["_TRANSPORT"] != tt.fields["_TRANSPORT"] {
				continue // the syslog case's native copy, checked elsewhere
			}
			matching++
			for k, v := range tt.fields {
				if e[k] != v {
					t.Errorf("%q: %s = %v, want %q", tt.msg, k, e[k], v)
				}
			}
		}
		if matching != 1 {
			t.Errorf("%q: %d entries over %s, want 1", tt.msg, matching, tt.fields["_TRANSPORT"])
		}
	}
	// No second copy of the stream run's entry, in any form (hclog's
	// text line on the stream would carry the message inside it).
	var copies []any
	for _, e := range entries {
		if m, ok := e["MESSAGE"].(string); ok && strings.Contains(m, "stream run: 10.0.0.3: ssh: OPEN SESAME "+nonce) {
			copies = append(copies, e["_TRANSPORT"])
		}
	}
	if len(copies) != 1 {
		t.Errorf("stream run entry is in the journal %d times (transports %v), want once", len(copies), copies)
	}
	if n := len(find("debug entry")); n != 0 {
		t.Errorf("debug entry below the level reached the journal %d times", n)
	}
	if t.Failed() {
		t.Logf("namespace stderr:\n%s", stderr.String())
	}
}

// TestRealJournaldHelper is what TestRealJournald runs inside the
// namespace.
func TestRealJournaldHelper(t *testing.T) {
	mode := os.Getenv("SESAME_EVENTLOG_HELPER")
	if mode == "" {
		t.Skip("only run by TestRealJournald")
	}
	nonce := os.Getenv("SESAME_NONCE")
	old := dialSyslog
	defer func() { dialSyslog = old }()
	dialSyslog = func(tag string) (*syslog.Writer, error) {
		return syslog.Dial("unixgram", "/run/systemd/journal/dev-log", syslog.LOG_DAEMON|syslog.LOG_NOTICE, tag)
	}
	if mode == "stream" {
		stream, err := isJournalStream(os.Stderr)
		if err != nil || !stream {
			t.Fatalf("stderr not recognised as the journal stream (JOURNAL_STREAM=%s): %v", os.Getenv("JOURNAL_STREAM"), err)
		}
		l, err := New(Options{Journald: JournaldAuto})
		if err != nil {
			t.Fatal(err)
		}
		l.Info("stream run: 10.0.0.3: ssh: OPEN SESAME "+nonce, event.KeyKind, event.Open)
		l.Close()
		return
	}
	l, err := New(Options{Journald: JournaldAuto, UseSyslog: true, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.JournaldActive() {
		t.Fatal("journald's socket is not reachable")
	}
	deadline := time.Date(2026, 11, 27, 22, 0, 0, 0, time.FixedZone("CET", 3600))
	l.Info("10.0.0.2: ssh: OPEN SESAME "+nonce, event.KeyKind, event.Open, "door", "ssh", "source", "10.0.0.2")
	l.Named("grant").Info("ssh: running command: /bin/true 10.0.0.2 "+nonce, event.KeyKind, event.Grant, "door", "ssh",
		"source", "10.0.0.2", "grant_id", "0123abcd", "deadline", deadline, "exit-code", 0)
	l.Info("rescue port opened "+nonce, event.KeyKind, event.RescueOpen)
	l.Warn("config: reload failed "+nonce, "error", "line 3: bad port")
	l.Debug("debug entry "+nonce, event.KeyKind, event.Stage)
	l.Info("10.0.0.2: ssh: Stage 1 "+nonce, event.KeyKind, event.Stage)
}
