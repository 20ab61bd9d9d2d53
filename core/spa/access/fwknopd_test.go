package access_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/spa"
	"github.com/sesame-knock/sesame/core/spa/access"
	"github.com/sesame-knock/sesame/internal/fwknoptest"
)

// libfko's numbers for HMAC digest types (fko_hmac_type_t).
var fwknopHMACNum = map[spa.HashType]string{spa.MD5: "1", spa.SHA1: "2", spa.SHA256: "3", spa.SHA384: "4", spa.SHA512: "5", spa.SHA3_256: "6", spa.SHA3_512: "7"}

// Debian's fwknopd reads the same access.conf the same way: key lengths
// (a KEY keeps its trailing blanks), digest type, timeouts and their
// defaults, REQUIRE_* and ACCESS_EXPIRE (local midnight).
func TestFwknopdReadsTheSame(t *testing.T) {
	text := `SOURCE ANY
KEY_BASE64 MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
HMAC_KEY_BASE64 aG1hYy1rZXktZm9yLXRlc3Rpbmc=

SOURCE 192.168.1.0/255.255.255.0, 10.0.0.1
DESTINATION 10.1.0.0/16
OPEN_PORTS tcp/22, udp/53
RESTRICT_PORTS tcp/23
KEY secret key with spaces   
HMAC_KEY hmac secret;trailing comment
HMAC_DIGEST_TYPE sha512
ENCRYPTION_MODE ctr
FW_ACCESS_TIMEOUT 45
MAX_FW_TIMEOUT 90
REQUIRE_USERNAME alice
REQUIRE_SOURCE_ADDRESS Y
ACCESS_EXPIRE 12/31/2027

SOURCE: 10.9.9.9
KEY k
HMAC_KEY_BASE64 aG1hYw
HMAC_DIGEST_TYPE SHA3_256
FW_ACCESS_TIMEOUT 0
REQUIRE_SOURCE yes
ACCESS_EXPIRE 1/2/30
`
	ours, err := access.Parse("access.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	theirs := fwknoptest.DumpAccess(t, text)
	if len(theirs) != len(ours.Stanzas) {
		t.Fatalf("fwknopd read %d stanzas, we read %d", len(theirs), len(ours.Stanzas))
	}
	yn := map[bool]string{true: "Yes", false: "No"}
	for i, s := range ours.Stanzas {
		f := theirs[i]
		want := map[string]string{
			"KEY_LEN":                strconv.Itoa(len(s.Keys.Key)),
			"HMAC_KEY_LEN":           strconv.Itoa(len(s.Keys.HMACKey)),
			"HMAC_DIGEST_TYPE":       fwknopHMACNum[s.Keys.HMAC],
			"FW_ACCESS_TIMEOUT":      strconv.Itoa(int(s.AccessTimeout.Seconds())),
			"MAX_FW_TIMEOUT":         strconv.Itoa(int(s.MaxTimeout.Seconds())),
			"REQUIRE_SOURCE_ADDRESS": yn[s.RequireSource],
			"REQUIRE_USERNAME":       "<not set>",
			"ACCESS_EXPIRE":          "<not set>",
		}
		if s.RequireUser != "" {
			want["REQUIRE_USERNAME"] = s.RequireUser
		}
		if !s.Expires.IsZero() {
			want["ACCESS_EXPIRE"] = s.Expires.Format("Mon Jan _2 15:04:05 2006")
		}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("stanza %d %s: fwknopd %q, we %q", i+1, k, f[k], v)
			}
		}
		if i == 1 && (f["OPEN_PORTS"] != "tcp/22, udp/53" || !strings.HasPrefix(f["SOURCE"], "192.168.1.0")) {
			t.Errorf("stanza 2 as fwknopd read it: %v", f)
		}
	}
}
