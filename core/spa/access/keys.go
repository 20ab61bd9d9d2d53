package access

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sesame-knock/sesame/core/spa"
)

// Keys whose feature Sesame does not have. Switches that turn a feature
// off (N) are accepted; anything that turns one on is refused.
var (
	offSwitches = map[string]string{
		"ENABLE_CMD_EXEC":      "command messages (remote command execution)",
		"ENABLE_CMD_SUDO_EXEC": "command messages (remote command execution)",
		"FORCE_MASQUERADE":     "NAT access",
		"FORWARD_ALL":          "NAT access",
		"DISABLE_DNAT":         "NAT access",
	}
	refused = map[string]string{
		"CMD_EXEC_USER":       "command messages (remote command execution)",
		"CMD_EXEC_GROUP":      "command messages (remote command execution)",
		"CMD_SUDO_EXEC_USER":  "command messages (remote command execution)",
		"CMD_SUDO_EXEC_GROUP": "command messages (remote command execution)",
		"CMD_CYCLE_OPEN":      "command cycles (CMD_CYCLE_*)",
		"CMD_CYCLE_CLOSE":     "command cycles (CMD_CYCLE_*)",
		"CMD_CYCLE_TIMER":     "command cycles (CMD_CYCLE_*)",
		"FORCE_NAT":           "NAT access",
		"FORCE_SNAT":          "NAT access",
	}
)

var keyLines = map[string]bool{"KEY": true, "KEY_BASE64": true, "HMAC_KEY": true, "HMAC_KEY_BASE64": true}

// set applies one stanza line. keysOnly is an %include_keys file.
func (p *parser) set(b *building, l line, keysOnly bool) {
	st := b.st
	fail := func(format string, args ...any) {
		p.errorf(l.file, l.n, format, args...)
		b.bad = true
	}
	if keysOnly && !keyLines[l.key] && !strings.HasPrefix(l.key, "GPG_") {
		fail("%s: an %%include_keys file holds only KEY, KEY_BASE64, HMAC_KEY and HMAC_KEY_BASE64", l.key)
		return
	}
	if strings.HasPrefix(l.key, "GPG_") {
		fail("%s: GnuPG SPA is not supported; use KEY_BASE64 and HMAC_KEY_BASE64 (fwknop --key-gen)", l.key)
		return
	}
	if what, ok := refused[l.key]; ok {
		fail("%s: Sesame does not support %s", l.key, what)
		return
	}
	if what, ok := offSwitches[l.key]; ok {
		on, err := yesNo(l.val)
		switch {
		case err != nil:
			fail("%s: %v", l.key, err)
		case on:
			fail("%s Y: Sesame does not support %s", l.key, what)
		}
		return
	}
	switch l.key {
	case "DESTINATION":
		if st.Destination = p.addrs(l); st.Destination == nil {
			b.bad = true
		}
	case "OPEN_PORTS", "RESTRICT_PORTS":
		ports, err := parsePorts(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		if l.key == "OPEN_PORTS" {
			st.OpenPorts = ports
		} else {
			st.RestrictPorts = ports
		}
	case "KEY", "HMAC_KEY":
		// fwknopd takes the value as written, up to ';' or the end of
		// the line, trailing blanks included.
		v := []byte(l.raw)
		if strings.EqualFold(l.val, "__CHANGEME__") {
			fail("%s is not set (still __CHANGEME__)", l.key)
			return
		}
		p.setKey(b, l, v)
	case "KEY_BASE64", "HMAC_KEY_BASE64":
		if strings.EqualFold(l.val, "__CHANGEME__") {
			fail("%s is not set (still __CHANGEME__)", l.key)
			return
		}
		v, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(l.val, "="))
		if err != nil || len(v) == 0 {
			fail("%s: not base64-encoded data", l.key)
			return
		}
		p.setKey(b, l, v)
	case "HMAC_DIGEST_TYPE":
		t, err := spa.ParseHashType(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		st.Keys.HMAC, b.hmacType = t, true
	case "ENCRYPTION_MODE":
		m, err := spa.ParseMode(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		if m == spa.Legacy {
			fail("ENCRYPTION_MODE legacy: fwknop's client cannot add an HMAC in legacy mode, and Sesame requires one")
			return
		}
		st.Keys.Mode = m
	case "FW_ACCESS_TIMEOUT", "MAX_FW_TIMEOUT":
		n, err := strconv.Atoi(l.val)
		if err != nil || n < 0 || n > MaxTimeout {
			fail("%s %q: want seconds, 0-%d", l.key, l.val, MaxTimeout)
			return
		}
		d := time.Duration(n) * time.Second
		if l.key == "FW_ACCESS_TIMEOUT" {
			st.AccessTimeout = d
		} else {
			st.MaxTimeout = d
		}
	case "REQUIRE_USERNAME":
		st.RequireUser = l.val
	case "REQUIRE_SOURCE_ADDRESS", "REQUIRE_SOURCE":
		v, err := yesNo(l.val)
		if err != nil {
			fail("%s: %v", l.key, err)
			return
		}
		st.RequireSource = v
	case "ACCESS_EXPIRE":
		t, err := parseDate(l.val, p.loc)
		if err != nil {
			fail("ACCESS_EXPIRE %q: %v", l.val, err)
			return
		}
		st.Expires = t
	case "ACCESS_EXPIRE_EPOCH":
		n, err := strconv.ParseUint(l.val, 10, 63)
		if err != nil {
			fail("ACCESS_EXPIRE_EPOCH %q: want seconds since 1970", l.val)
			return
		}
		st.Expires = time.Unix(int64(n), 0)
	default:
		fail("unknown access.conf key %q", l.key)
	}
}

func (p *parser) setKey(b *building, l line, v []byte) {
	switch l.key {
	case "KEY", "KEY_BASE64":
		if len(v) > 32 {
			p.errorf(l.file, l.n, "%s: %d bytes; Rijndael keys are at most 32", l.key, len(v))
			b.bad = true
			return
		}
		b.st.Keys.Key, b.key = v, l
	default:
		if len(v) > spa.MaxHMACKeyLen {
			p.errorf(l.file, l.n, "%s: %d bytes; HMAC keys are at most %d", l.key, len(v), spa.MaxHMACKeyLen)
			b.bad = true
			return
		}
		b.st.Keys.HMACKey, b.hmac = v, l
	}
}

// finishStanza checks what a stanza needs as a whole and sets defaults
// (fwknopd's acc_data_is_valid and set_acc_defaults).
func (p *parser) finishStanza(b *building) {
	st := b.st
	if st.AccessTimeout <= 0 {
		st.AccessTimeout = DefaultAccessTimeout
	}
	if st.MaxTimeout <= 0 {
		st.MaxTimeout = DefaultMaxTimeout
	}
	if b.bad {
		return
	}
	if st.Keys.Key == nil {
		p.errorf(st.File, st.Line, "stanza has no KEY or KEY_BASE64")
		return
	}
	if st.Keys.HMACKey == nil {
		p.errorf(st.File, st.Line, "stanza has no HMAC_KEY or HMAC_KEY_BASE64: Sesame accepts only HMAC-authenticated SPA (fwknop --key-gen makes both keys; the client needs --use-hmac)")
		return
	}
	if bytes.Equal(st.Keys.Key, st.Keys.HMACKey) {
		p.errorf(b.hmac.file, b.hmac.n, "the HMAC key is the encryption key; they must differ (fwknopd refuses this too)")
		return
	}
	if st.MaxTimeout < st.AccessTimeout {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: MAX_FW_TIMEOUT (%s) is below FW_ACCESS_TIMEOUT (%s): it caps only the clients' own timeouts (-f), as in fwknopd",
			st.Where(), st.MaxTimeout, st.AccessTimeout))
	}
}
