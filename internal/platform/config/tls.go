package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is the client side of a TLS connection: the CA bundle that signs the
// server's certificate (system roots when empty), an optional client
// certificate for mutual TLS, and the name expected in the server's
// certificate (the host dialled when empty). The fields hold file paths,
// never key material.
type TLS struct {
	CA         string `env:"CA"`
	Cert       string `env:"CERT"`
	Key        string `env:"KEY"`
	ServerName string `env:"SERVER_NAME"`
}

// set reports whether any field is given.
func (t TLS) set() bool { return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" }

// validate loads the files so that a wrong path or a file of the wrong kind
// stops the program at start-up, naming the variable.
func (t TLS) validate(prefix string) []error {
	var errs []error
	if (t.Cert == "") != (t.Key == "") {
		errs = append(errs, fmt.Errorf("%sCERT and %sKEY: set both for a client certificate, or neither", prefix, prefix))
	}
	if t.CA != "" {
		if _, err := loadCertPool(t.CA); err != nil {
			errs = append(errs, fmt.Errorf("%sCA=%q: %w", prefix, t.CA, err))
		}
	}
	if t.Cert != "" && t.Key != "" {
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			errs = append(errs, fmt.Errorf("%sCERT=%q, %sKEY=%q: %w", prefix, t.Cert, prefix, t.Key, err))
		}
	}
	return errs
}

// ClientConfig builds the crypto/tls configuration for a connection to
// host (used as the expected server name unless ServerName is set).
func (t TLS) ClientConfig(host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CA != "" {
		pool, err := loadCertPool(t.CA)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", t.CA, err)
		}
		c.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", t.Cert, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return pool, nil
}
