package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientCommonName is the subject of the client certificates NewCerts
// issues.
const ClientCommonName = "iot-etl"

// Certs is a throwaway PKI for one test: a CA, a server certificate and a
// client certificate it signed, and a second, unrelated CA (with a client
// certificate of its own) for the wrong-CA cases. The fields are paths of
// PEM files (keys 0600) in Dir.
type Certs struct {
	Dir   string
	Hosts []string // the server certificate's names and addresses

	CA         string // the CA that signed ServerCert and ClientCert
	ServerCert string
	ServerKey  string
	ClientCert string // CN ClientCommonName
	ClientKey  string

	OtherCA         string // a CA that signed nothing the servers trust
	OtherClientCert string // a client certificate OtherCA signed
	OtherClientKey  string

	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

// NewCerts issues the certificates of one test. The server certificate is
// valid for hosts (DNS names or IP addresses), localhost and 127.0.0.1 by
// default. The files live in the test's temporary directory and are
// removed with it.
func NewCerts(t testing.TB, hosts ...string) *Certs {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	c := &Certs{Dir: t.TempDir(), Hosts: hosts}
	file := func(name string) string { return filepath.Join(c.Dir, name) }
	c.CA, c.ServerCert, c.ServerKey = file("ca.pem"), file("server.pem"), file("server-key.pem")
	c.ClientCert, c.ClientKey = file("client.pem"), file("client-key.pem")
	c.OtherCA, c.OtherClientCert, c.OtherClientKey = file("other-ca.pem"), file("other-client.pem"), file("other-client-key.pem")

	ca, caKey := newCA(t, "iot-etl test CA")
	other, otherKey := newCA(t, "unrelated test CA")
	writePEM(t, c.CA, "CERTIFICATE", ca.Raw)
	writePEM(t, c.OtherCA, "CERTIFICATE", other.Raw)

	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	c.server = issue(t, server, ca, caKey, c.ServerCert, c.ServerKey)
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	c.client = issue(t, client, ca, caKey, c.ClientCert, c.ClientKey)
	otherClient := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	issue(t, otherClient, other, otherKey, c.OtherClientCert, c.OtherClientKey)

	c.pool = x509.NewCertPool()
	c.pool.AddCert(ca)
	return c
}

// Pool holds the test CA.
func (c *Certs) Pool() *x509.CertPool { return c.pool }

// ServerTLS is the configuration of a server presenting the server
// certificate. With requireClient, a client must present a certificate the
// test CA signed.
func (c *Certs) ServerTLS(requireClient bool) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c.server}}
	if requireClient {
		tc.ClientAuth, tc.ClientCAs = tls.RequireAndVerifyClientCert, c.pool
	}
	return tc
}

// ClientTLS is the configuration of a client that trusts the test CA and
// presents the client certificate, for serverName.
func (c *Certs) ClientTLS(serverName string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.pool, ServerName: serverName,
		Certificates: []tls.Certificate{c.client}}
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue signs tmpl with the CA, writes the certificate and its key, and
// returns the pair.
func issue(t testing.TB, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", keyDER)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
