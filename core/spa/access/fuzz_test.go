package access

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any text either parses into stanzas that hold together or
// fails with errors that each name access.conf and a line.
func FuzzParse(f *testing.F) {
	f.Add("SOURCE ANY\nKEY_BASE64 " + k64 + "\nHMAC_KEY_BASE64 " + h64 + "\n")
	f.Add("SOURCE 10.0.0.0/255.255.255.0, ::1\nKEY k ;x\nHMAC_KEY h\nOPEN_PORTS tcp/22,udp/53\nRESTRICT_PORTS tcp/23\nACCESS_EXPIRE 12/31/27\nREQUIRE_SOURCE_ADDRESS Y\n")
	f.Add("# comment\n;x\n\nSOURCE: ANY\r\nKEY\tk\r\nHMAC_KEY h\r\nENCRYPTION_MODE cfb\nHMAC_DIGEST_TYPE sha3_512\nFW_ACCESS_TIMEOUT 5\nMAX_FW_TIMEOUT 9\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse("access.conf", []byte(text))
		if err != nil {
			for _, e := range unjoin(err) {
				var ae *Error
				if errors.As(e, &ae) {
					if ae.File != "access.conf" && !strings.HasPrefix(ae.Msg, "%") || ae.Line < 1 {
						t.Fatalf("error without a place: %#v", ae)
					}
				} else if !strings.Contains(e.Error(), "no SOURCE stanza") {
					t.Fatalf("error %q is not an *Error", e)
				}
			}
			return
		}
		for i, s := range c.Stanzas {
			if s.Num != i+1 || len(s.Source) == 0 || len(s.Keys.Key) == 0 || len(s.Keys.Key) > 32 ||
				len(s.Keys.HMACKey) == 0 || s.AccessTimeout <= 0 || s.MaxTimeout <= 0 {
				t.Fatalf("stanza %d does not hold together: %+v", i+1, s)
			}
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
