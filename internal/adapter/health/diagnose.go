package health

import (
	"errors"
	"strings"

	"github.com/aws/smithy-go"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
)

// Layer is where a connection failed.
type Layer string

// The layers Diagnose tells apart. A failure at none of them (a refused
// connection, a timeout) is left as it is: its own message is clear.
const (
	LayerTLS            Layer = "TLS"
	LayerAuthentication Layer = "authentication"
	LayerAuthorization  Layer = "authorization"
)

// Settings names the variables that configure one component's connection,
// so a diagnosis can say which one to look at.
type Settings struct {
	TLS         string // the switch or mode: TEMPORAL_TLS, POSTGRES_SSLMODE...
	CA          string
	Cert        string
	ServerName  string
	Credentials string
	// Plaintext: the connection does not use TLS. NoClientCert: it uses
	// TLS without a client certificate. Some refusals mean something else
	// then.
	Plaintext, NoClientCert bool
}

// Diagnosis is a connection failure at a known layer: what failed, the
// settings that decide it, and the error as the client reported it.
type Diagnosis struct {
	Layer    Layer
	What     string
	Settings string
	Err      error
}

func (d *Diagnosis) Error() string {
	s := string(d.Layer) + ": " + d.What
	if d.Settings != "" {
		s += " (check " + d.Settings + ")"
	}
	return s + ": " + d.Err.Error()
}

func (d *Diagnosis) Unwrap() error { return d.Err }

// Diagnose names the layer of a connection error: TLS (unknown certificate
// authority, wrong server name, client certificate refused, TLS on one side
// only), authentication (password, SASL, API key) or authorization
// (permission denied on a table, topic or namespace). An error it cannot
// place is returned unchanged.
func Diagnose(err error, s Settings) error {
	if err == nil {
		return nil
	}
	var d *Diagnosis
	if errors.As(err, &d) {
		return err
	}
	layer, what, settings := classify(err, s)
	if layer == "" {
		return err
	}
	return &Diagnosis{Layer: layer, What: what, Settings: settings, Err: err}
}

func classify(err error, s Settings) (Layer, string, string) {
	msg := err.Error()
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(msg, sub) {
				return true
			}
		}
		return false
	}
	join := func(names ...string) string {
		var out []string
		for _, n := range names {
			if n != "" {
				out = append(out, n)
			}
		}
		return strings.Join(out, ", ")
	}

	// TLS, from the most specific message to the least. Go's own x509
	// and tls texts reach us through every client, gRPC's included.
	switch {
	case has("x509: certificate signed by unknown authority"):
		return LayerTLS, "the server's certificate is signed by an unknown certificate authority", s.CA
	case has("x509: certificate is valid for", "x509: certificate is not valid for any names", "x509: cannot validate certificate for"):
		return LayerTLS, "the server's certificate does not match the server name", s.ServerName
	case has("x509: certificate has expired or is not yet valid"):
		return LayerTLS, "a certificate has expired or is not yet valid", join(s.CA, s.Cert)
	case has("tls: certificate required"):
		return LayerTLS, "the server requires a client certificate", s.Cert
	case has("remote error: tls: bad certificate", "remote error: tls: unknown certificate authority", "remote error: tls: unknown certificate",
		"remote error: tls: certificate unknown", "remote error: tls: expired certificate"):
		return LayerTLS, "the server rejected the client certificate", s.Cert
	case has("first record does not look like a TLS handshake"):
		return LayerTLS, "the server does not speak TLS on this port", s.TLS
	case has("server refused TLS connection", "TLS requested but server does not support TLS"):
		return LayerTLS, "the server does not accept TLS", s.TLS
	case has("client is using TLS when the broker is not expecting it"):
		return LayerTLS, "the broker does not speak TLS on this port", s.TLS
	case has("broker requires TLS but the client is using plaintext"):
		return LayerTLS, "the broker requires TLS", s.TLS
	case has("SASL is required but not provided"):
		return LayerAuthentication, "the broker requires SASL authentication", "KAFKA_SASL_MECHANISM, " + s.Credentials
	case has("tls: ", "x509: "):
		return LayerTLS, "the TLS handshake failed", join(s.TLS, s.CA, s.Cert, s.ServerName)
	}

	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "28P01":
			return LayerAuthentication, "the password was rejected", s.Credentials
		case pgErr.Code == "28000" && strings.Contains(pgErr.Message, "no pg_hba.conf entry") && strings.Contains(pgErr.Message, "no encryption"):
			return LayerAuthentication, "the server accepts this user only over TLS", s.TLS
		case pgErr.Code == "28000":
			return LayerAuthentication, "the server refused the login", s.Credentials
		case pgErr.Code == "42501":
			return LayerAuthorization, pgErr.Message, "the role's GRANTs, docs/deploy.md"
		}
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1045, 1698, 1251:
			if s.Plaintext {
				// MariaDB refuses a REQUIRE SSL account, or any login
				// under require_secure_transport, with the same 1045.
				return LayerAuthentication, "the login was refused: a wrong user or password, or a user that may connect only over TLS", join(s.Credentials, s.TLS)
			}
			return LayerAuthentication, "the password or user was rejected", s.Credentials
		case 3159, 1759: // secure transport required
			return LayerTLS, "the server requires TLS", s.TLS
		case 1044, 1142, 1143, 1227, 1370:
			return LayerAuthorization, myErr.Message, "the user's GRANTs, docs/deploy.md"
		}
	}
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kafka.ErrSASLRejected):
		return LayerAuthentication, "SASL authentication failed", s.Credentials
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return LayerAuthentication, "the broker does not accept this SASL mechanism", "KAFKA_SASL_MECHANISM"
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed):
		return LayerAuthorization, "the broker denied access", "the principal's ACLs"
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "InvalidClientTokenId":
			return LayerAuthentication, "the object store rejected the credentials (" + apiErr.ErrorCode() + ")", s.Credentials
		case "AccessDenied", "AllAccessDisabled":
			return LayerAuthorization, "the object store denied access (" + apiErr.ErrorCode() + ")", "the identity's policy on the bucket and prefix, docs/deploy.md"
		}
	}
	if has("failed to retrieve credentials", "no EC2 IMDS role found", "failed to refresh cached credentials") {
		return LayerAuthentication, "no AWS credentials were found", s.Credentials + " or the AWS SDK's chain (role, ~/.aws)"
	}
	if s.NoClientCert && has("broken pipe", "connection reset by peer") {
		// A server that requires a client certificate may close the
		// connection before its TLS alert reaches the client.
		return LayerTLS, "the server closed the connection during the TLS handshake, as it does when it requires a client certificate", s.Cert
	}
	if st := serviceerror.ToStatus(err); st != nil {
		switch st.Code() {
		case codes.Unauthenticated:
			return LayerAuthentication, "the Temporal frontend rejected the credentials", join(s.Credentials, s.Cert)
		case codes.PermissionDenied:
			return LayerAuthorization, "the Temporal frontend denied access", "the API key's or certificate's namespace permissions"
		}
	}
	return "", "", ""
}

// String renders a Layer.
func (l Layer) String() string { return string(l) }

// LayerOf is the layer of the diagnosis in err's chain, or "" when err was
// not diagnosed.
func LayerOf(err error) Layer {
	var d *Diagnosis
	if errors.As(err, &d) {
		return d.Layer
	}
	return ""
}

// DiagnoseKafka is Diagnose for an error of a Kafka client that w watches:
// when the client's last connection attempt was refused at a known layer,
// that refusal is the cause, whatever the request's own error says (often
// only EOF or a timeout).
func DiagnoseKafka(err error, w *kafka.ConnWatch) error {
	if err == nil {
		return nil
	}
	if _, connErr := w.Last(); connErr != nil {
		if d := Diagnose(connErr, KafkaSettings); LayerOf(d) != "" {
			return d
		}
	}
	return Diagnose(err, KafkaSettings)
}
