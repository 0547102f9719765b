package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
)

// TestNewCerts: the server certificate names exactly the hosts asked for
// and chains to the CA, not to the other CA; the client certificate is
// for client authentication; every file is 0600.
func TestNewCerts(t *testing.T) {
	t.Parallel()
	c := NewCerts(t, "db.test", "10.1.2.3")
	for _, f := range []string{c.CA, c.ServerCert, c.ServerKey, c.ClientCert, c.ClientKey, c.OtherCA, c.OtherClientCert, c.OtherClientKey} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	server := leaf(t, c.ServerCert, c.ServerKey)
	if got := strings.Join(server.DNSNames, ","); got != "db.test" {
		t.Errorf("DNS names %q", got)
	}
	if len(server.IPAddresses) != 1 || !server.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) {
		t.Errorf("IP addresses %v", server.IPAddresses)
	}
	other := x509.NewCertPool()
	other.AppendCertsFromPEM(mustRead(t, c.OtherCA))
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		host  string
		want  string
	}{
		{"CA, DNS name", c.Pool(), "db.test", ""},
		{"CA, IP", c.Pool(), "10.1.2.3", ""},
		{"CA, other name", c.Pool(), "localhost", "x509: certificate is valid for db.test, not localhost"},
		{"other CA", other, "db.test", "x509: certificate signed by unknown authority"},
	} {
		_, err := server.Verify(x509.VerifyOptions{Roots: tc.roots, DNSName: tc.host})
		if got := errText(err); !strings.Contains(got, tc.want) || (tc.want == "") != (err == nil) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	client := leaf(t, c.ClientCert, c.ClientKey)
	if client.Subject.CommonName != ClientCommonName {
		t.Errorf("client CN %q", client.Subject.CommonName)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := leaf(t, c.OtherClientCert, c.OtherClientKey).Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the other CA's client certificate verifies against the test CA")
	}
	if c.ServerTLS(true).ClientAuth != tls.RequireAndVerifyClientCert || c.ServerTLS(false).ClientAuth != tls.NoClientCert {
		t.Error("ServerTLS client authentication")
	}
}

func leaf(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
