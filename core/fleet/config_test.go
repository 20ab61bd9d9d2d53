package fleet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/internal/etcdtest"
)

func TestConfigSet(t *testing.T) {
	var c Config
	if ok, err := c.Set("Interface", "eth0"); ok || err != nil {
		t.Fatalf("a non-fleet key: %v %v", ok, err)
	}
	for key, val := range map[string]string{
		"FLEET_ENDPOINTS": " https://10.0.0.5:2379, https://[fd00::6]:2379/ ",
		"fleet_group":     "bastions", "Fleet_Node": "bastion-3",
		"Fleet_CA": "/etc/sesame/ca.pem", "Fleet_Cert": "/etc/sesame/f.pem", "Fleet_Key": "/etc/sesame/k.pem",
	} {
		if ok, err := c.Set(key, val); !ok || err != nil {
			t.Fatalf("Set(%s): %v %v", key, ok, err)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Endpoints, ",") != "https://10.0.0.5:2379,https://[fd00::6]:2379" || c.Group != "bastions" || !c.TLS() {
		t.Fatalf("parsed %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	set := []struct{ key, val, reason string }{
		{KeyEndpoints, "", "empty list"},
		{KeyEndpoints, "10.0.0.5:2379", "scheme"},
		{KeyEndpoints, "ftp://10.0.0.5:2379", "scheme"},
		{KeyEndpoints, "http://10.0.0.5", "host:port"},
		{KeyEndpoints, "http://10.0.0.5:0", "out of range"},
		{KeyEndpoints, "http://10.0.0.5:2379/v3", "nothing else"},
		{KeyEndpoints, "http://u:p@10.0.0.5:2379", "nothing else"},
		{KeyEndpoints, "http://10.0.0.5:2379,https://10.0.0.6:2379", "mixes"},
		{KeyEndpoints, "http://10.0.0.5:2379,,http://10.0.0.6:2379", "endpoint 2 is empty"},
		{KeyEndpoints, "http://a:1,http://a:1", "twice"},
		{KeyGroup, "a/b", "not allowed"},
		{KeyGroup, "..", "not a name"},
		{KeyGroup, strings.Repeat("g", 65), "longer"},
		{KeyNode, "", "empty"},
		{KeyCA, "ca.pem", "absolute"},
		{KeyKey, "", "empty path"},
	}
	for _, c := range set {
		var cfg Config
		ok, err := cfg.Set(c.key, c.val)
		var ce *ConfigError
		if !ok || !errors.As(err, &ce) || ce.Key != c.key || !strings.HasPrefix(err.Error(), c.key+": ") || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("Set(%s, %q) = %v, %v; want a ConfigError for %s saying %q", c.key, c.val, ok, err, c.key, c.reason)
		}
	}
	eps := []string{"http://10.0.0.5:2379"}
	teps := []string{"https://10.0.0.5:2379"}
	validate := []struct {
		cfg      Config
		key, why string
	}{
		{Config{Group: "g"}, KeyGroup, "no fleet"},
		{Config{CA: "/ca"}, KeyCA, "no fleet"},
		{Config{Endpoints: eps}, KeyGroup, "missing"},
		{Config{Endpoints: eps, Group: "g", CA: "/ca"}, KeyCA, "http://"},
		{Config{Endpoints: eps, Group: "g", Cert: "/c", Key: "/k"}, KeyCert, "http://"},
		{Config{Endpoints: teps, Group: "g", Cert: "/c"}, KeyKey, "missing"},
		{Config{Endpoints: teps, Group: "g", Key: "/k"}, KeyCert, "missing"},
		{Config{Endpoints: []string{"http://x"}, Group: "g"}, KeyEndpoints, "host:port"},
	}
	for _, c := range validate {
		err := c.cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(err.Error(), c.why) {
			t.Errorf("Validate(%+v) = %v, want %s: ...%s", c.cfg, err, c.key, c.why)
		}
	}
	for _, ok := range []Config{{}, {Endpoints: eps, Group: "g"}, {Endpoints: teps, Group: "g"}, {Endpoints: teps, Group: "g", CA: "/ca", Cert: "/c", Key: "/k"}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", ok, err)
		}
	}
}

func TestConfigDefaultNode(t *testing.T) {
	c := Config{Endpoints: []string{"http://10.0.0.5:2379"}, Group: "g"}
	got, err := c.WithDefaults(func() (string, error) { return "bastion-3", nil })
	if err != nil || got.Node != "bastion-3" {
		t.Fatalf("%+v %v", got, err)
	}
	_, err = c.WithDefaults(func() (string, error) { return "bad host", nil })
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != KeyNode {
		t.Fatalf("bad host name: %v, want an error naming %s", err, KeyNode)
	}
	c.Node = "set"
	if got, _ := c.WithDefaults(nil); got.Node != "set" {
		t.Fatalf("Node overridden: %+v", got)
	}
}

func TestTLSConfigFiles(t *testing.T) {
	pki := etcdtest.NewPKI(t, "test-ca")
	cert, key := pki.ClientCert(t, "n1")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	base := Config{Endpoints: []string{"https://127.0.0.1:2379"}, Group: "g", Node: "n"}
	good := base
	good.CA, good.Cert, good.Key = pki.CAFile, cert, key
	tc, err := good.TLSConfig()
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 {
		t.Fatalf("good files: %v", err)
	}
	for _, c := range []struct {
		mod      func(*Config)
		key, why string
	}{
		{func(c *Config) { c.CA = filepath.Join(dir, "missing.pem") }, KeyCA, "no such file"},
		{func(c *Config) { c.CA = junk }, KeyCA, "no PEM certificate"},
		{func(c *Config) { c.Key = filepath.Join(dir, "missing.pem") }, KeyKey, "no such file"},
		{func(c *Config) { c.Key = cert }, KeyCert, "with Fleet_Key"},
	} {
		cfg := good
		c.mod(&cfg)
		_, err := cfg.TLSConfig()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != c.key || !strings.Contains(err.Error(), c.why) {
			t.Errorf("TLSConfig: %v, want %s: ...%s", err, c.key, c.why)
		}
	}
}
