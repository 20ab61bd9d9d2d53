package command

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestExpand(t *testing.T) {
	tests := []struct{ tmpl, ip, want string }{
		{"iptables -A INPUT -s %IP% -j ACCEPT", "192.0.2.7", "iptables -A INPUT -s 192.0.2.7 -j ACCEPT"},
		{"%IP% and %IP%", "2001:db8::1", "2001:db8::1 and 2001:db8::1"},
		{"no substitution", "192.0.2.7", "no substitution"},
		{"mapped %IP%", "::ffff:192.0.2.7", "mapped 192.0.2.7"},
		{"%ip% is not substituted", "192.0.2.7", "%ip% is not substituted"},
	}
	for _, tt := range tests {
		if got := Expand(tt.tmpl, netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Expand(%q, %s) = %q, want %q", tt.tmpl, tt.ip, got, tt.want)
		}
	}
}

func testLogger(buf *bytes.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
}

func TestRunLogsInKnockdWords(t *testing.T) {
	var buf bytes.Buffer
	r := New(Options{Logger: testLogger(&buf)})
	res := r.Run(context.Background(), "ssh", "exit 3")
	if res.Err != nil || res.ExitCode != 3 {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"ssh: running command: exit 3", "ssh: command returned non-zero status code (3)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
	res = r.Run(context.Background(), "ssh", "echo hello; true")
	if res.Err != nil || res.ExitCode != 0 || !strings.Contains(buf.String(), "hello") {
		t.Errorf("result %+v, log:\n%s", res, buf.String())
	}
}

func TestRunPassesEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := New(Options{})
	r.Run(context.Background(), "d", `printf %s "$SESAME_TEST" > `+out, "SESAME_TEST=yes")
	if b, _ := os.ReadFile(out); string(b) != "yes" {
		t.Errorf("env not passed: %q", b)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	r := New(Options{MaxConcurrent: 2})
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Run(context.Background(), "d", "echo + >> "+log+"; sleep 0.1; echo - >> "+log)
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(log)
	running, peak := 0, 0
	for _, l := range strings.Fields(string(data)) {
		if l == "+" {
			running++
		} else {
			running--
		}
		peak = max(peak, running)
	}
	if peak != 2 {
		t.Errorf("peak concurrency %d, want 2 (log %q)", peak, data)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	r := New(Options{Timeout: 200 * time.Millisecond})
	start := time.Now()
	// The background child must die with its parent shell.
	res := r.Run(context.Background(), "d", "(sleep 0.5; touch "+dir+"/survived) & sleep 3")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "killed") {
		t.Fatalf("result %+v", res)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("kill took %v", el)
	}
	time.Sleep(time.Second) // past the child's 0.5 s, had it lived
	if _, err := os.Stat(dir + "/survived"); err == nil {
		t.Error("a child of the killed command survived")
	}
}

func TestRateLimitPerDoor(t *testing.T) {
	r := New(Options{Rate: 1, Burst: 3})
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !r.Allow("a", now) {
			t.Fatalf("call %d refused within burst", i)
		}
	}
	if r.Allow("a", now) {
		t.Error("burst exceeded but allowed")
	}
	if !r.Allow("b", now) {
		t.Error("door b limited by door a")
	}
	if !r.Allow("a", now.Add(time.Second)) {
		t.Error("not refilled after a second")
	}
}

func TestWaitForSlotHonoursContext(t *testing.T) {
	r := New(Options{MaxConcurrent: 1})
	go r.Run(context.Background(), "d", "sleep 1")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := r.Run(ctx, "d", "true"); res.Err == nil {
		t.Error("ran despite no free slot and a cancelled context")
	}
}

func TestRunMarkedWritesStatusAfterTheCommand(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "done")
	r := New(Options{})
	// The command sees no marker yet; afterwards it holds the exit status.
	res := r.RunMarked(context.Background(), "d", `test ! -e `+marker+` && exit 7`, marker)
	if res.ExitCode != 7 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "7" {
		t.Errorf("marker %q %v", b, err)
	}
	// Quoting: the command text reaches sh -c unchanged.
	out := filepath.Join(dir, "out")
	r.RunMarked(context.Background(), "d", `printf '%s' "a b" > `+out+`; echo "$0" >> `+out, marker)
	if b, _ := os.ReadFile(out); string(b) != "a b/bin/sh\n" {
		t.Errorf("command saw %q", b)
	}
}

// A failed command's output is logged at warning after knockd's line,
// with its status, quoted on one line and bounded (issue 18: a start
// command that exits 127 said only "non-zero status code"). A command
// that succeeds keeps its output at debug.
func TestFailedCommandOutputAtWarning(t *testing.T) {
	var buf bytes.Buffer
	r := New(Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})})
	res := r.Run(context.Background(), "ssh", "/nonexistent/iptables -A INPUT; echo second line >&2; exit 127")
	if res.ExitCode != 127 || !strings.Contains(res.Output, "/nonexistent/iptables: not found") {
		t.Fatalf("result %+v", res)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "[WARN]  ssh: command returned non-zero status code (127)") ||
		!strings.Contains(lines[2], `[WARN]  ssh: command output (status 127): "`) ||
		!strings.Contains(lines[2], `/nonexistent/iptables: not found\nsecond line"`) ||
		!strings.Contains(lines[2], "event=command-output") {
		t.Errorf("log:\n%s", buf.String())
	}
	if got := FirstLine(res.Output, 200); !strings.HasSuffix(got, "/nonexistent/iptables: not found") {
		t.Errorf("FirstLine = %q", got)
	}

	buf.Reset()
	res = r.Run(context.Background(), "ssh", "head -c 5000 /dev/zero | tr '\\0' x; exit 1")
	if len(res.Output) != outputLimit {
		t.Errorf("output kept: %d bytes, want %d", len(res.Output), outputLimit)
	}
	if !strings.Contains(buf.String(), `x"... (3072 more bytes)`) || strings.Count(buf.String(), "x") > outputLogLimit+10 {
		t.Errorf("a long output is not cut in the log:\n%s", buf.String()[max(0, len(buf.String())-300):])
	}

	buf.Reset()
	r.Run(context.Background(), "ssh", "printf 'a%sb' ll-good")
	if strings.Contains(buf.String(), "all-goodb") {
		t.Errorf("a successful command's output above debug:\n%s", buf.String())
	}
}
