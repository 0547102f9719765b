package testenv

import (
	"strconv"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka starts an in-process kfake cluster on a free 127.0.0.1 port with
// topic seeded with partitions partitions, and closes it with the test. The
// cluster is returned so tests can inject faults with ControlKey.
func Kafka(t testing.TB, topic string, partitions int32) (*kfake.Cluster, []string) {
	t.Helper()
	Integration(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		Unavailable(t, "kfake Kafka cluster", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// KafkaSecurity is how a secured test cluster authenticates clients.
type KafkaSecurity struct {
	// Certs, when set, makes the brokers speak TLS with Certs' server
	// certificate.
	Certs *Certs
	// Mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), User and Password
	// are the client's SASL credentials. An administrator, AdminUser with
	// AdminPassword over PLAIN, is always added: it may alter or delete the
	// client's SCRAM credentials.
	Mechanism, User, Password string
	// ReauthAfter, when set, makes the brokers require SASL
	// re-authentication of every connection after this long
	// (connections.max.reauth.ms), so revoked credentials end sessions
	// that are already open.
	ReauthAfter time.Duration
}

// The administrator of every secured test cluster.
const (
	KafkaAdminUser     = "admin"
	KafkaAdminPassword = "admin-secret"
)

// SecureKafka is Kafka with TLS and SASL as sec says. It returns the
// cluster and its addresses.
func SecureKafka(t testing.TB, topic string, partitions int32, sec KafkaSecurity) (*kfake.Cluster, []string) {
	t.Helper()
	Integration(t)
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", KafkaAdminUser, KafkaAdminPassword), kfake.User(sec.Mechanism, sec.User, sec.Password)}
	if sec.Certs != nil {
		opts = append(opts, kfake.TLS(sec.Certs.ServerTLS(false)))
	}
	if sec.ReauthAfter > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"connections.max.reauth.ms": strconv.FormatInt(sec.ReauthAfter.Milliseconds(), 10)}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		Unavailable(t, "kfake Kafka cluster", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// KafkaConfig is the client configuration for a secured test cluster:
// TLS trusting Certs' CA (when set) and the client's SASL credentials.
func (sec KafkaSecurity) KafkaConfig(base config.Kafka, brokers []string) config.Kafka {
	base.BootstrapServers = brokers
	if sec.Certs != nil {
		base.TLSOn, base.TLS.CA = true, sec.Certs.CA
	}
	base.SASLMechanism, base.SASLUsername, base.SASLPassword = sec.Mechanism, sec.User, config.Secret(sec.Password)
	return base
}
