package health

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.temporal.io/api/serviceerror"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// TestDiagnose covers each layer with the error texts and types the
// clients return (the integration tests provoke them for real).
func TestDiagnose(t *testing.T) {
	t.Parallel()
	pg := PostgresSettings("TIMESCALE_")
	cases := []struct {
		name string
		err  error
		s    Settings
		want string // "" when the error is left as it is
	}{
		{"unknown CA", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), pg,
			"TLS: the server's certificate is signed by an unknown certificate authority (check TIMESCALE_SSLROOTCERT)"},
		{"wrong name", errors.New("x509: certificate is valid for localhost, not db.example.com"), KafkaSettings,
			"TLS: the server's certificate does not match the server name (check KAFKA_TLS_SERVER_NAME)"},
		{"client certificate required", errors.New(`connection error: desc = "error reading server preface: remote error: tls: certificate required"`), TemporalSettings,
			"TLS: the server requires a client certificate (check TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)"},
		{"client certificate refused", errors.New("remote error: tls: bad certificate"), TemporalSettings,
			"TLS: the server rejected the client certificate (check TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)"},
		{"plain server", errors.New("tls: first record does not look like a TLS handshake"), TemporalSettings,
			"TLS: the server does not speak TLS on this port (check TEMPORAL_TLS)"},
		{"broken pipe, no client certificate", errors.New("write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe"), TemporalSettingsFor(tlsTemporal()),
			"TLS: the server closed the connection during the TLS handshake, as it does when it requires a client certificate (check TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)"},
		{"broken pipe, plain connection", errors.New("write: broken pipe"), TemporalSettings, ""},
		{"pg password", &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, pg,
			"authentication: the password was rejected (check TIMESCALE_USER/TIMESCALE_PASSWORD)"},
		{"pg hostssl only", &pgconn.PgError{Code: "28000", Message: `no pg_hba.conf entry for host "1.2.3.4", user "u", database "d", no encryption`}, pg,
			"authentication: the server accepts this user only over TLS (check TIMESCALE_SSLMODE)"},
		{"pg grant", fmt.Errorf("count: %w", &pgconn.PgError{Code: "42501", Message: "permission denied for table sensor_readings"}), pg,
			"authorization: permission denied for table sensor_readings (check the role's GRANTs, docs/deploy.md)"},
		{"mysql password over TLS", &mysql.MySQLError{Number: 1045, Message: "Access denied"}, MySQLSettingsFor(tlsMySQL()),
			"authentication: the password or user was rejected (check MYSQL_USER/MYSQL_PASSWORD)"},
		{"mysql refusal without TLS", &mysql.MySQLError{Number: 1045, Message: "Access denied"}, MySQLSettings,
			"authentication: the password or user was rejected (check MYSQL_USER/MYSQL_PASSWORD)"},
		{"mysql grant", &mysql.MySQLError{Number: 1142, Message: "SELECT command denied to user 'r'@'%' for table `devices`"}, MySQLSettings,
			"authorization: SELECT command denied to user 'r'@'%' for table `devices` (check the user's GRANTs, docs/deploy.md)"},
		{"sasl", fmt.Errorf("list topic: %w", kerr.SaslAuthenticationFailed), KafkaSettings,
			"authentication: SASL authentication failed (check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)"},
		{"sasl hang-up", errors.Join(kafka.ErrSASLRejected, errors.New("EOF")), KafkaSettings,
			"authentication: SASL authentication failed (check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)"},
		{"topic ACL", kerr.TopicAuthorizationFailed, KafkaSettings, "authorization: the broker denied access (check the principal's ACLs)"},
		{"api key", serviceerror.NewPermissionDenied("namespace iot", ""), TemporalSettings,
			"authorization: the Temporal frontend denied access (check the API key's or certificate's namespace permissions)"},
		{"s3 key", fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: "InvalidAccessKeyId", Message: "no such key"}), ExportSettings,
			"authentication: the object store rejected the credentials (InvalidAccessKeyId) (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"},
		{"s3 policy", &smithy.GenericAPIError{Code: "AccessDenied", Message: "denied"}, ExportSettings,
			"authorization: the object store denied access (AccessDenied) (check the identity's policy on the bucket and prefix, docs/deploy.md)"},
		{"refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), pg, ""},
	}
	for _, c := range cases {
		got := Diagnose(c.err, c.s)
		if c.want == "" {
			if got != c.err { //nolint:errorlint // identity: an undiagnosed error comes back unchanged
				t.Errorf("%s: %v, want the error unchanged", c.name, got)
			}
			continue
		}
		var d *Diagnosis
		if !errors.As(got, &d) {
			t.Errorf("%s: %v, want a diagnosis", c.name, got)
			continue
		}
		if head := got.Error()[:len(got.Error())-len(c.err.Error())-2]; head != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, head, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: the diagnosis does not wrap the error", c.name)
		}
	}
	// The refusal of a login without TLS may be TLS, not the password.
	s := MySQLSettings
	s.Plaintext = true
	got := Diagnose(&mysql.MySQLError{Number: 1045, Message: "Access denied"}, s)
	if want := "authentication: the login was refused: a wrong user or password, or a user that may connect only over TLS (check MYSQL_USER/MYSQL_PASSWORD, MYSQL_TLS): Error 1045: Access denied"; got.Error() != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func tlsTemporal() config.Temporal { return config.Temporal{TLSOn: true} }

func tlsMySQL() config.MySQL { return config.MySQL{TLSMode: "true"} }
