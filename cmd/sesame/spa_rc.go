package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/sesame-knock/sesame/core/spa"
)

// rcParam is one "NAME VALUE" line of an fwknop rc file.
type rcParam struct {
	line      int
	name, val string
}

// parseRC reads fwknop's ~/.fwknoprc: [stanza] lines, then "NAME VALUE"
// lines; the value is the first word (it ends at a blank, ';' or '#'),
// a trailing ':' on the name is dropped, and lines starting with '#' or
// ';' are comments. Stanza names compare case-insensitively, as in
// fwknop. It returns the params per lower-cased stanza name, in order;
// a line that is not "NAME VALUE" is an error only inside a stanza that
// is read (fwknop's behaviour), so it is recorded with an empty name.
func parseRC(text []byte) map[string][]rcParam {
	out := map[string][]rcParam{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.ContainsRune("#;\r", rune(line[0])) {
			continue
		}
		t := strings.TrimLeft(line, " \t\r\v\f")
		if strings.HasPrefix(t, "[") {
			if name, _, ok := strings.Cut(t[1:], "]"); ok {
				section = strings.ToLower(name)
				if _, seen := out[section]; !seen {
					out[section] = nil
				}
				continue
			}
		}
		if section == "" {
			continue
		}
		fields := strings.Fields(t)
		p := rcParam{line: n}
		if len(fields) >= 2 {
			val := fields[1]
			if i := strings.IndexAny(val, ";#"); i >= 0 {
				val = val[:i]
			}
			if val != "" {
				p.name, p.val = strings.TrimSuffix(fields[0], ":"), val
			}
		}
		if p.name == "" {
			p.val = strings.TrimSpace(t)
		}
		out[section] = append(out[section], p)
	}
	return out
}

// loadRC applies path's [default] stanza and then the named one to o.
// A missing default rc file is fine (fwknop would create one; Sesame
// writes nothing); a missing --rc-file or -n stanza is an error.
func loadRC(path string, explicit bool, named string, o *spaOptions) error {
	if path == "" {
		if named != "" {
			return fmt.Errorf("-n %s: no home directory to find ~/.fwknoprc in", named)
		}
		return nil
	}
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit && named == "" {
		return nil
	}
	if err != nil {
		return err
	}
	rc := parseRC(text)
	for _, s := range []string{"default", strings.ToLower(named)} {
		if s == "" {
			continue
		}
		params, ok := rc[s]
		if !ok {
			if s == "default" {
				continue
			}
			return fmt.Errorf("%s: named configuration stanza [%s] was not found", path, named)
		}
		for _, p := range params {
			if err := applyRC(p, o); err != nil {
				return fmt.Errorf("%s:%d: %w", path, p.line, err)
			}
		}
	}
	return nil
}

func rcYes(v string) bool { return strings.EqualFold(v, "Y") }

// applyRC sets what one rc line says. Names fwknop knows but Sesame does
// not do are refused when they would change the packet (GnuPG, NAT, web
// resolution, other transports) and ignored when they are only about
// them (their settings with the feature off).
func applyRC(p rcParam, o *spaOptions) error {
	if p.name == "" {
		return fmt.Errorf("%q: want NAME VALUE", p.val)
	}
	err := applyRCValue(p, o)
	if err != nil && !strings.HasPrefix(err.Error(), p.name) {
		err = fmt.Errorf("%s: %w", p.name, err)
	}
	return err
}

func applyRCValue(p rcParam, o *spaOptions) error {
	v := p.val
	var err error
	switch p.name {
	case "ACCESS":
		o.access = v
	case "ALLOW_IP":
		switch {
		case strings.EqualFold(v, "source"):
			o.source, o.allowIP = true, ""
		case strings.EqualFold(v, "resolve"):
			return errors.New("ALLOW_IP resolve: not supported (Sesame contacts no external service); give the address")
		default:
			if _, err := netip.ParseAddr(v); err != nil {
				return fmt.Errorf("ALLOW_IP %q: not an IP address", v)
			}
			o.source, o.allowIP = false, v
		}
	case "SPA_SERVER":
		o.dest = v
	case "SPA_SERVER_PORT":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("SPA_SERVER_PORT %q: want 1-65535", v)
		}
		o.port = n
	case "SPA_SERVER_PROTO":
		return checkProto(v)
	case "FW_TIMEOUT":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > spa.MaxClientTimeout {
			return fmt.Errorf("FW_TIMEOUT %q: want 0-%d seconds", v, spa.MaxClientTimeout)
		}
		o.fwTimeout = n
	case "KEY":
		o.key = []byte(v)
	case "KEY_BASE64":
		if o.key, err = decodeB64Key(v); err != nil {
			return fmt.Errorf("KEY_BASE64: %w", err)
		}
	case "HMAC_KEY":
		o.hmacKey, o.useHMAC = []byte(v), true
	case "HMAC_KEY_BASE64":
		if o.hmacKey, err = decodeB64Key(v); err != nil {
			return fmt.Errorf("HMAC_KEY_BASE64: %w", err)
		}
		o.useHMAC = true
	case "USE_HMAC":
		o.useHMAC = rcYes(v)
	case "HMAC_DIGEST_TYPE":
		o.hmacType, err = spa.ParseHashType(v)
	case "DIGEST_TYPE":
		o.digestType, err = spa.ParseHashType(v)
	case "ENCRYPTION_MODE":
		o.mode, err = spa.ParseMode(v)
	case "TIME_OFFSET":
		n, err := parseTimeOffset(strings.TrimPrefix(v, "-"))
		if err != nil {
			return err
		}
		if strings.HasPrefix(v, "-") {
			n = -n
		}
		o.offset += n
	case "SPOOF_USER":
		o.user = v
	case "VERBOSE":
		if rcYes(v) {
			o.verbose++
		}
	case "SERVER_RESOLVE_IPV4":
		if rcYes(v) {
			o.family = "udp4"
		}
	case "NO_SAVE_ARGS", "HTTP_USER_AGENT", "RESOLVE_URL", "WGET_CMD", "USE_WGET_USER_AGENT", "RESOLVE_HTTP_ONLY",
		"GPG_RECIPIENT", "GPG_SIGNER", "GPG_HOMEDIR", "GPG_EXE", "GPG_SIGNING_PW", "GPG_SIGNING_PW_BASE64",
		"GPG_NO_SIGNING_PW", "USE_GPG_AGENT", "NAT_PORT":
		// Settings of features that are off unless switched on below.
	case "USE_GPG":
		if rcYes(v) {
			return errors.New("USE_GPG: GnuPG SPA is not supported; use KEY_BASE64 and HMAC_KEY_BASE64")
		}
	case "RESOLVE_IP_HTTPS", "RESOLVE_IP_HTTP":
		if rcYes(v) {
			return fmt.Errorf("%s: not supported (Sesame contacts no external service); set ALLOW_IP", p.name)
		}
	case "NAT_ACCESS":
		return errors.New("NAT_ACCESS: NAT access is not supported")
	case "NAT_LOCAL", "NAT_RAND_PORT", "RAND_PORT":
		if rcYes(v) {
			return fmt.Errorf("%s: not supported", p.name)
		}
	case "SPA_SOURCE_PORT", "SPOOF_SOURCE_IP", "KEY_FILE", "HMAC_KEY_FILE":
		return fmt.Errorf("%s: not supported by sesame spa", p.name)
	default:
		return fmt.Errorf("unknown variable %s", p.name)
	}
	return err
}
