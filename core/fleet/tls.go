package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSConfig reads Fleet_CA, Fleet_Cert and Fleet_Key. It returns nil for
// http:// endpoints. Errors name the key and the file.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if !c.TLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, keyErr(KeyCA, "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, keyErr(KeyCA, "%s: no PEM certificate in it", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		for _, kv := range [][2]string{{KeyCert, c.Cert}, {KeyKey, c.Key}} {
			if _, err := os.Stat(kv[1]); err != nil {
				return nil, keyErr(kv[0], "%v", err)
			}
		}
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, keyErr(KeyCert, "%s with %s %s: %v", c.Cert, KeyKey, c.Key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// diagnoseTLS finds out whether an https endpoint refuses this node's
// TLS credentials or presents a certificate Fleet_CA does not verify.
// gRPC reports either as a timeout, which tells the admin nothing. It
// returns an error matching ErrTLS naming the endpoint and the reason,
// or nil when the handshake works (or the endpoint cannot be reached,
// which is not a TLS problem).
func diagnoseTLS(ctx context.Context, endpoint string, tc *tls.Config, timeout time.Duration) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || tc == nil {
		return nil
	}
	cfg := tc.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		if isTLSFailure(err) {
			return fmt.Errorf("%w: %s: %v (check %s)", ErrTLS, endpoint, err, blame(err))
		}
		return nil
	}
	defer conn.Close()
	// With TLS 1.3 the server checks the client certificate after the
	// client's handshake is done; its verdict comes with the first read.
	// An HTTP/2 server speaks first (SETTINGS), so a good handshake reads
	// bytes at once.
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil && isTLSFailure(err) {
		return fmt.Errorf("%w: %s: %v (check %s)", ErrTLS, endpoint, err, blame(err))
	}
	return nil
}

func isTLSFailure(err error) bool {
	var (
		alert   tls.AlertError
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		rec     tls.RecordHeaderError
	)
	return errors.As(err, &alert) || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &host) || errors.As(err, &invalid) || errors.As(err, &rec) ||
		strings.Contains(err.Error(), "remote error: tls:")
}

// blame names the keys to look at for a TLS failure.
func blame(err error) string {
	var (
		verify *tls.CertificateVerificationError
		alert  tls.AlertError
		rec    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verify):
		return KeyCA + ": it does not verify the server's certificate"
	case errors.As(err, &rec):
		return KeyEndpoints + ": the server does not speak TLS"
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls:"):
		return KeyCert + " and " + KeyKey + ": the server refused this node's certificate"
	}
	return KeyCA + ", " + KeyCert + " and " + KeyKey
}
