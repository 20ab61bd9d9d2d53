package preflight

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesame-knock/sesame/core/fleet"
	"github.com/sesame-knock/sesame/internal/etcdtest"
)

const fleetConf = `[options]
	Fleet_Endpoints = https://192.0.2.5:2379
	Fleet_Group     = bastions
	Fleet_CA        = %s
	Fleet_Cert      = %s
	Fleet_Key       = %s
[ssh]
	sequence = 7000,8000,9000
	Open     = 22/tcp
	Fleet    = yes
`

// sesame check reads the fleet's TLS files, asks etcd once, and puts
// each problem at the line of the key to fix.
func TestCheckFleet(t *testing.T) {
	pki := etcdtest.NewPKI(t, "fleet-ca")
	cert, key := pki.ClientCert(t, "host1")
	other := etcdtest.NewPKI(t, "other-ca")
	_, otherKey := other.ClientCert(t, "host1")
	for _, c := range []struct {
		name              string
		ca, cert, key     string
		answer            error
		unit              string
		wantErr, wantWarn string
		wantNote          string
	}{
		{name: "good", ca: pki.CAFile, cert: cert, key: key, wantNote: "this host is host1 in fleet group bastions"},
		{name: "etcd answers", ca: pki.CAFile, cert: cert, key: key, wantNote: "fleet group bastions: etcd answers at https://192.0.2.5:2379"},
		{name: "missing CA", ca: "/nonexistent/ca.pem", cert: cert, key: key, wantErr: "sesame.conf:4: Fleet_CA: open /nonexistent/ca.pem: no such file or directory"},
		{name: "key of another certificate", ca: pki.CAFile, cert: cert, key: otherKey, wantErr: "sesame.conf:5: Fleet_Cert: " + cert + " with Fleet_Key " + otherKey},
		{name: "refused by etcd", ca: pki.CAFile, cert: cert, key: key,
			answer:  fmt.Errorf("%w: https://192.0.2.5:2379: remote error: tls: bad certificate (check Fleet_Cert and Fleet_Key: the server refused this node's certificate)", fleet.ErrTLS),
			wantErr: "sesame.conf:5: fleet TLS credentials rejected"},
		{name: "server not trusted", ca: pki.CAFile, cert: cert, key: key,
			answer:  fmt.Errorf("%w: https://192.0.2.5:2379: x509: certificate signed by unknown authority (check Fleet_CA: it does not verify the server's certificate)", fleet.ErrTLS),
			wantErr: "sesame.conf:4: fleet TLS credentials rejected"},
		{name: "etcd down", ca: pki.CAFile, cert: cert, key: key,
			answer:   fmt.Errorf("%w: [https://192.0.2.5:2379]: context deadline exceeded", fleet.ErrUnreachable),
			wantWarn: "sesame.conf:2: etcd unreachable: [https://192.0.2.5:2379]: context deadline exceeded: sesamed starts without it"},
		{name: "key in a hidden home", ca: pki.CAFile, cert: cert, key: "/home/admin/fleet-key.pem", unit: "[Service]\nProtectSystem=strict\nProtectHome=yes\n",
			wantErr: "sesame.conf:6: Fleet_Key /home/admin/fleet-key.pem is inaccessible (ProtectHome=yes) under u.service"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := fakeSystem(t)
			asked := 0
			s.fleet = func(ctx context.Context, fc fleet.Config) error {
				asked++
				if fc.Node != "host1" || fc.Group != "bastions" {
					t.Errorf("asked etcd with %+v", fc)
				}
				return c.answer
			}
			var opts Options
			if c.unit != "" {
				opts.Sandbox = ParseUnit("u.service", []byte(c.unit))
			}
			dir := t.TempDir()
			_, r := load(t, dir, fmt.Sprintf(fleetConf, c.ca, c.cert, c.key), opts)
			errs := fmt.Sprint(r.Errors)
			switch {
			case c.wantErr == "" && len(r.Errors) > 0:
				t.Fatalf("errors: %v", r.Errors)
			case c.wantErr != "" && !strings.Contains(errs, filepath.Join(dir, c.wantErr)) && !strings.Contains(errs, c.wantErr):
				t.Fatalf("errors %v, want %q", r.Errors, c.wantErr)
			}
			if c.wantWarn != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), c.wantWarn) {
				t.Fatalf("warnings %q, want %q", r.Warnings, c.wantWarn)
			}
			if c.wantNote != "" && !strings.Contains(strings.Join(r.Notes, "\n"), c.wantNote) {
				t.Fatalf("notes %q, want %q", r.Notes, c.wantNote)
			}
			if c.wantErr == "" && asked != 1 {
				t.Fatalf("etcd asked %d times", asked)
			}
		})
	}
}
