package config

import (
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/fleet"
)

// The parser's names of the fleet keys are the fleet package's, which
// parses their values.
func TestFleetKeyNames(t *testing.T) {
	var got []string
	for _, k := range []Key{KeyFleetEndpoints, KeyFleetGroup, KeyFleetNode, KeyFleetCA, KeyFleetCert, KeyFleetKey} {
		got = append(got, k.String())
	}
	if strings.Join(got, ",") != strings.Join(fleet.Keys, ",") {
		t.Fatalf("config's fleet keys %v, fleet's %v", got, fleet.Keys)
	}
}

func TestParseFleet(t *testing.T) {
	c, err := Parse("f.conf", []byte(`[options]
	Fleet_Endpoints = https://10.0.0.5:2379, https://10.0.0.6:2379
	Fleet_Group     = bastions
	Fleet_Node      = bastion-3
	Fleet_CA        = /etc/sesame/fleet-ca.pem
	Fleet_Cert      = /etc/sesame/fleet.pem
	Fleet_Key       = /etc/sesame/fleet-key.pem
[ssh]
	sequence = 7000,8000,9000
	Open     = 22/tcp
	Fleet    = yes
[web]
	sequence = 1,2
	Open     = 443/tcp
`))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Options.Fleet
	if !f.Enabled() || f.Group != "bastions" || f.Node != "bastion-3" || len(f.Endpoints) != 2 || !f.TLS() || f.Key != "/etc/sesame/fleet-key.pem" {
		t.Errorf("fleet = %+v", f)
	}
	if !c.Doors[0].Fleet || c.Doors[1].Fleet {
		t.Errorf("Fleet: ssh %v, web %v", c.Doors[0].Fleet, c.Doors[1].Fleet)
	}
	if c.Options.Lines.Of(KeyFleetGroup) != 3 || c.Doors[0].KeyLine(KeyFleet) != 11 {
		t.Errorf("lines: group %d, Fleet %d", c.Options.Lines.Of(KeyFleetGroup), c.Doors[0].KeyLine(KeyFleet))
	}
}

// Every fleet error names the file, the line of the key to fix (of
// Fleet_Endpoints for a key that is missing) and the key.
func TestParseFleetErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"[options]\nFleet_Endpoints = ftp://x:1\nFleet_Group = g\n[d]\nsequence = 1\n", "f.conf:2: Fleet_Endpoints: endpoint \"ftp://x:1\": scheme must be http:// or https://"},
		{"[options]\nFleet_Endpoints = http://x:1\n[d]\nsequence = 1\n", "f.conf:2: Fleet_Group: missing"},
		{"[options]\nFleet_Group = g\n[d]\nsequence = 1\n", "f.conf:2: Fleet_Group: set, but Fleet_Endpoints is not"},
		{"[options]\nFleet_Endpoints = http://x:1\nFleet_Group = a/b\n[d]\nsequence = 1\n", "f.conf:3: Fleet_Group: \"a/b\": character '/' not allowed"},
		{"[options]\nFleet_Endpoints = http://x:1\nFleet_Group = g\nFleet_CA = /ca.pem\n[d]\nsequence = 1\n", "f.conf:4: Fleet_CA: set, but Fleet_Endpoints are http://"},
		{"[options]\nFleet_Endpoints = https://x:1\nFleet_Group = g\n\nFleet_Key = /k.pem\n[d]\nsequence = 1\n", "f.conf:2: Fleet_Cert: missing"},
		{"[options]\nFleet_Endpoints = https://x:1\nFleet_Group = g\nFleet_Cert = cert.pem\n[d]\nsequence = 1\n", "f.conf:4: Fleet_Cert: \"cert.pem\" is not an absolute path"},
		{"[d]\nsequence = 1\nFleet = yes\n", "f.conf:3: door \"d\": Fleet = yes, but [options] has no Fleet_Endpoints"},
		{"[d]\nsequence = 1\nFleet = maybe\n", "f.conf:3: Fleet: \"maybe\" is not yes or no"},
		{"[d]\nsequence = 1\nFleet_Group = g\n", "f.conf:3: Fleet_Group is a global option"},
		{"[options]\nFleet = yes\n", "f.conf:2: Fleet can only be used within a door section"},
		{"[options]\nFleet_Endpoint = http://x:1\n", "f.conf:2: unknown option Fleet_Endpoint; did you mean Fleet_Endpoints?"},
	} {
		_, err := Parse("f.conf", []byte(c.conf))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n error %v\n want %q", c.conf, err, c.want)
		}
	}
	// Fleet = no needs no fleet.
	if _, err := Parse("f.conf", []byte("[d]\nsequence = 1\nFleet = no\n")); err != nil {
		t.Error(err)
	}
}
