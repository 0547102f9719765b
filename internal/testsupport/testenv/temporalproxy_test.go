package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

func TestMain(m *testing.M) { Main(m) }

// describe dials through the proxy as t says and describes the default
// namespace.
func describe(t *testing.T, tc config.Temporal) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tc.Namespace = "default"
	c, err := temporalx.DialWith(ctx, tc, temporalx.Silent)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return "", err
	}
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	if err != nil {
		return "", err
	}
	return ns.GetNamespaceInfo().GetName(), nil
}

// TestTemporalMTLSProxy: the client certificate of the test CA gets
// through; none, or one of another CA, fails the TLS handshake.
func TestTemporalMTLSProxy(t *testing.T) {
	certs := NewCerts(t)
	p := StartTemporalMTLSProxy(t, certs, Temporal(t))
	good := config.Temporal{Address: p.Addr, TLS: config.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}}
	if ns, err := describe(t, good); err != nil || ns != "default" {
		t.Fatalf("with the client certificate: %q, %v", ns, err)
	}
	admitted := p.Admitted()
	if admitted < 1 || p.Refused() != 0 {
		t.Errorf("admitted %d, refused %d connections; want ≥1 and 0", admitted, p.Refused())
	}

	for _, tc := range []struct {
		name string
		tls  config.TLS
		want string
	}{
		{"no client certificate", config.TLS{CA: certs.CA}, "remote error: tls: certificate required"},
		{"certificate of another CA", config.TLS{CA: certs.CA, Cert: certs.OtherClientCert, Key: certs.OtherClientKey}, "remote error: tls: "},
		{"server of an unknown CA", config.TLS{CA: certs.OtherCA, Cert: certs.ClientCert, Key: certs.ClientKey}, "x509: certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := describe(t, config.Temporal{Address: p.Addr, TLS: tc.tls})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if p.Admitted() != admitted {
		t.Errorf("%d connections admitted after the refusals, want %d", p.Admitted(), admitted)
	}
}

// TestTemporalAPIKeyProxy: calls with the key get through; a wrong key is
// UNAUTHENTICATED; TLS is verified against the test CA.
func TestTemporalAPIKeyProxy(t *testing.T) {
	certs := NewCerts(t)
	p := StartTemporalAPIKeyProxy(t, certs, Temporal(t), "k3y-0f-test")
	if ns, err := describe(t, config.Temporal{Address: p.Addr, APIKey: "k3y-0f-test", TLS: config.TLS{CA: certs.CA}}); err != nil || ns != "default" {
		t.Fatalf("with the key: %q, %v", ns, err)
	}
	if p.Admitted() < 2 || p.Refused() != 0 {
		t.Errorf("admitted %d, refused %d calls", p.Admitted(), p.Refused())
	}

	_, err := describe(t, config.Temporal{Address: p.Addr, APIKey: "wrong", TLS: config.TLS{CA: certs.CA}})
	if st := serviceerror.ToStatus(err); st.Code() != codes.Unauthenticated || !strings.HasSuffix(err.Error(), "code = Unauthenticated desc = invalid API key") {
		t.Errorf("wrong key: %v, want Unauthenticated: invalid API key", err)
	}
	_, err = describe(t, config.Temporal{Address: p.Addr, TLSOn: true, TLS: config.TLS{CA: certs.CA}})
	if st := serviceerror.ToStatus(err); st.Code() != codes.Unauthenticated || !strings.HasSuffix(err.Error(), "code = Unauthenticated desc = missing API key") {
		t.Errorf("no key: %v, want Unauthenticated: missing API key", err)
	}
	_, err = describe(t, config.Temporal{Address: p.Addr, APIKey: "k3y-0f-test", TLS: config.TLS{CA: certs.OtherCA}})
	if err == nil || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
		t.Errorf("unknown CA: %v", err)
	}
	if p.Refused() != 2 {
		t.Errorf("refused %d calls, want 2", p.Refused())
	}
}
