package verify

import (
	"strings"
	"testing"
	"time"

	"github.com/sesame-knock/sesame/core/spa/replay"
	"github.com/sesame-knock/sesame/internal/fwknoptest"
)

// Packets from Debian's fwknop client, made now, through the Verifier
// with an access.conf as an fwknop user writes it: -a, -s with a client
// timeout, and a replay.
func TestFwknopClientAccepted(t *testing.T) {
	st := conf(t, main+"\nHMAC_DIGEST_TYPE sha384\nENCRYPTION_MODE CFB\n")
	v, err := New(st, replay.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"--key-base64-rijndael", b64(key), "--key-base64-hmac", b64(hmacKey), "--use-hmac", "--hmac-digest-type", "sha384", "-M", "cfb"}
	p := fwknoptest.MakePacket(t, append([]string{"-D", "192.0.2.1", "-a", "198.51.100.9", "-A", "tcp/22"}, keys...)...)
	got := v.Verify(p.Data, client4, server4, time.Now())
	if got.Reason != Accepted {
		t.Fatalf("%s %s\n%s", got.Reason, got.Detail, p.Output)
	}
	if r := got.Request; r.Allow.String() != "198.51.100.9" || r.User != fwknoptest.User || r.Timeout != 40*time.Second {
		t.Errorf("request %+v", r)
	}
	if again := v.Verify(p.Data, client4, server4, time.Now()); again.Reason != Replay {
		t.Errorf("replay: %s", again.Reason)
	}

	p = fwknoptest.MakePacket(t, append([]string{"-D", "192.0.2.1", "-s", "-A", "tcp/22", "-f", "75"}, keys...)...)
	got = v.Verify(p.Data, client4, server4, time.Now())
	if got.Reason != Accepted || got.Request.Allow != client4 || got.Request.Timeout != 75*time.Second {
		t.Fatalf("-s -f 75: %s %s %+v", got.Reason, got.Detail, got.Request)
	}

	p = fwknoptest.MakePacket(t, append([]string{"-D", "192.0.2.1", "-a", "198.51.100.9", "-A", "tcp/22", "--time-offset-minus", "5m"}, keys...)...)
	if got := v.Verify(p.Data, client4, server4, time.Now()); got.Reason != Stale || !strings.Contains(got.Detail, "time difference") {
		t.Fatalf("5 minutes old: %s %s", got.Reason, got.Detail)
	}
}
