package fleet

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/sesame-knock/sesame/core/knock"
)

// The [options] keys of sesame.conf that configure the fleet, as the
// shipped config spells them (the parser matches them in any case).
const (
	KeyEndpoints = "Fleet_Endpoints"
	KeyGroup     = "Fleet_Group"
	KeyNode      = "Fleet_Node"
	KeyCA        = "Fleet_CA"
	KeyCert      = "Fleet_Cert"
	KeyKey       = "Fleet_Key"
)

// Keys lists every fleet key, for the config parser's table of known keys.
var Keys = []string{KeyEndpoints, KeyGroup, KeyNode, KeyCA, KeyCert, KeyKey}

// Limits on names. A group and a node name are path segments of etcd
// keys and show up in logs, so they are kept to host-name characters.
const (
	MaxGroupLen  = 64
	MaxNodeLen   = 64
	MaxEndpoints = 16
)

// Config is the fleet part of [options]. The zero value is "no fleet".
type Config struct {
	// Endpoints are etcd client URLs, all http:// or all https://.
	Endpoints []string
	// Group names the key prefix /sesame/<Group>/ the nodes share.
	Group string
	// Node is this host's name in the group; empty means the host name
	// (see WithDefaults).
	Node string
	// CA verifies the etcd servers' certificates (https only); empty
	// means the system's roots. Cert and Key are this node's client
	// certificate for mutual TLS, both or neither.
	CA, Cert, Key string
}

// ConfigError is a problem with one fleet key. Its message starts with
// the key's name; the config parser prefixes the file and the line of
// Key.
type ConfigError struct {
	Key string // one of the Key* constants
	Err error
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func keyErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Enabled reports whether the config asks for a fleet.
func (c *Config) Enabled() bool { return len(c.Endpoints) > 0 }

// Set parses the value of one fleet key into c. It reports false (and no
// error) when key is not a fleet key, so the parser can try its others.
// A repeated key replaces the earlier value, as other options do.
func (c *Config) Set(key, value string) (bool, error) {
	value = strings.TrimSpace(value)
	switch strings.ToUpper(strings.TrimSpace(key)) {
	case strings.ToUpper(KeyEndpoints):
		eps, err := parseEndpoints(value)
		if err != nil {
			return true, &ConfigError{Key: KeyEndpoints, Err: err}
		}
		c.Endpoints = eps
	case strings.ToUpper(KeyGroup):
		if err := checkName(value, MaxGroupLen); err != nil {
			return true, &ConfigError{Key: KeyGroup, Err: err}
		}
		c.Group = value
	case strings.ToUpper(KeyNode):
		if err := checkName(value, MaxNodeLen); err != nil {
			return true, &ConfigError{Key: KeyNode, Err: err}
		}
		c.Node = value
	case strings.ToUpper(KeyCA):
		return true, setPath(&c.CA, KeyCA, value)
	case strings.ToUpper(KeyCert):
		return true, setPath(&c.Cert, KeyCert, value)
	case strings.ToUpper(KeyKey):
		return true, setPath(&c.Key, KeyKey, value)
	default:
		return false, nil
	}
	return true, nil
}

func setPath(dst *string, key, value string) error {
	if value == "" {
		return keyErr(key, "empty path")
	}
	if !strings.HasPrefix(value, "/") {
		return keyErr(key, "%q is not an absolute path", value)
	}
	*dst = value
	return nil
}

// Validate checks the keys together, after the whole [options] section
// was read with Set. Each error names the key to fix. It does not read
// the TLS files (TLSConfig does).
func (c *Config) Validate() error {
	if !c.Enabled() {
		for _, kv := range [][2]string{{KeyGroup, c.Group}, {KeyNode, c.Node}, {KeyCA, c.CA}, {KeyCert, c.Cert}, {KeyKey, c.Key}} {
			if kv[1] != "" {
				return keyErr(kv[0], "set, but %s is not: no fleet to join", KeyEndpoints)
			}
		}
		return nil
	}
	if _, err := parseEndpoints(strings.Join(c.Endpoints, ",")); err != nil {
		return &ConfigError{Key: KeyEndpoints, Err: err}
	}
	if c.Group == "" {
		return keyErr(KeyGroup, "missing: %s is set, so the group to join must be named", KeyEndpoints)
	}
	if err := checkName(c.Group, MaxGroupLen); err != nil {
		return &ConfigError{Key: KeyGroup, Err: err}
	}
	if c.Node != "" {
		if err := checkName(c.Node, MaxNodeLen); err != nil {
			return &ConfigError{Key: KeyNode, Err: err}
		}
	}
	if !c.TLS() {
		for _, kv := range [][2]string{{KeyCA, c.CA}, {KeyCert, c.Cert}, {KeyKey, c.Key}} {
			if kv[1] != "" {
				return keyErr(kv[0], "set, but %s are http:// (use https:// for TLS)", KeyEndpoints)
			}
		}
		return nil
	}
	if (c.Cert == "") != (c.Key == "") {
		if c.Cert == "" {
			return keyErr(KeyCert, "missing: %s is set, and a client key needs its certificate", KeyKey)
		}
		return keyErr(KeyKey, "missing: %s is set, and a client certificate needs its key", KeyCert)
	}
	return nil
}

// TLS reports whether the endpoints are https://.
func (c *Config) TLS() bool {
	return len(c.Endpoints) > 0 && strings.HasPrefix(c.Endpoints[0], "https://")
}

// WithDefaults returns c with Node set to hostname() when it is empty.
// A host name that is not a valid node name is an error naming
// Fleet_Node, so the admin knows which key to set.
func (c Config) WithDefaults(hostname func() (string, error)) (Config, error) {
	if !c.Enabled() || c.Node != "" {
		return c, nil
	}
	if hostname == nil {
		hostname = os.Hostname
	}
	h, err := hostname()
	if err != nil {
		return c, keyErr(KeyNode, "not set, and the host name is unknown: %v", err)
	}
	if err := checkName(h, MaxNodeLen); err != nil {
		return c, keyErr(KeyNode, "not set, and the host name cannot be used: %v", err)
	}
	c.Node = h
	return c, nil
}

// checkName accepts 1-max of [A-Za-z0-9._-], not "." or "..": a group
// or node name is one segment of an etcd key.
func checkName(s string, max int) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > max {
		return fmt.Errorf("%q is longer than %d characters", s, max)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a name", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !nameByte(c) {
			return fmt.Errorf("%q: character %q not allowed (use A-Z a-z 0-9 . _ -)", s, c)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.'
}

// parseEndpoints parses a comma list of http:// or https:// URLs with a
// host and a port and nothing else; all must use the same scheme.
func parseEndpoints(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty list")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxEndpoints {
		return nil, fmt.Errorf("%d endpoints, at most %d", len(parts), MaxEndpoints)
	}
	out := make([]string, 0, len(parts))
	seen := make(map[string]bool)
	scheme := ""
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("endpoint %d is empty", i+1)
		}
		if !strings.HasPrefix(p, "http://") && !strings.HasPrefix(p, "https://") {
			return nil, fmt.Errorf("endpoint %q: scheme must be http:// or https://", p)
		}
		u, err := url.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %v", p, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("endpoint %q: scheme must be http:// or https://", p)
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return nil, fmt.Errorf("endpoint %q: want scheme://host:port and nothing else", p)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("endpoint %q: want host:port", p)
		}
		if _, err := knock.ParsePortNum(port); err != nil {
			return nil, fmt.Errorf("endpoint %q: %v", p, err)
		}
		if scheme == "" {
			scheme = u.Scheme
		} else if u.Scheme != scheme {
			return nil, fmt.Errorf("endpoint %q: mixes http:// and https:// endpoints", p)
		}
		ep := u.Scheme + "://" + u.Host
		if seen[ep] {
			return nil, fmt.Errorf("endpoint %q listed twice", p)
		}
		seen[ep] = true
		out = append(out, ep)
	}
	return out, nil
}
