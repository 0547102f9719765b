package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// secureStreamStack is a stream stack on brokers that require SASL with
// mechanism over TLS, with sessions re-authenticated every few seconds so revoked
// credentials take effect on open connections. The worker reads its SASL
// password from a file (KAFKA_SASL_PASSWORD_FILE).
func secureStreamStack(t *testing.T, mechanism string) (*e2e.Stream, testenv.KafkaSecurity, []string) {
	t.Helper()
	sec := testenv.KafkaSecurity{Certs: testenv.NewCerts(t), Mechanism: mechanism, User: "etl-stream",
		Password: testenv.Password(), ReauthAfter: 3 * time.Second}
	var brokers []string
	s := e2e.NewStreamWith(t, e2e.StreamOptions{Partitions: 3, Cluster: func(k config.Kafka) config.Kafka {
		_, brokers = testenv.SecureKafka(t, k.Topic, 3, sec)
		return sec.KafkaConfig(k, brokers)
	}})
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(sec.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Worker.Kill()
	delete(s.Env, "KAFKA_SASL_PASSWORD")
	s.Env["KAFKA_SASL_PASSWORD_FILE"] = pwFile
	s.StartWorker()
	return s, sec, brokers
}

var simulateReport = regexp.MustCompile(`(?m)^good +(\d+)\n(?:.*\n)*?^bad +(\d+) `)

// TestStreamOverSASLAndTLS: `starter simulate` publishes to brokers that
// require SASL (SCRAM-SHA-256, then PLAIN) over TLS and the stream lands every message exactly
// once: raw rows = the good messages, dead letters = the bad ones, windows
// = a recomputation from raw, offsets = the high watermarks.
func TestStreamOverSASLAndTLS(t *testing.T) {
	for _, mechanism := range []string{"SCRAM-SHA-256", "PLAIN"} {
		t.Run(mechanism, func(t *testing.T) { streamOverSASLAndTLS(t, mechanism) })
	}
}

func streamOverSASLAndTLS(t *testing.T, mechanism string) {
	s, _, _ := secureStreamStack(t, mechanism)
	run := s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	defer s.TC.CancelWorkflow(context.Background(), run.GetID(), "")

	// Event times from a fixed instant, one message every millisecond: no
	// two readings of a device share a time.
	start := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute).Format(time.RFC3339)
	out := e2e.RunStarter(t, testenv.Build(t, "./starter"), s.Env, "simulate", "--devices", "12", "--seed", "7", "--rate", "1000",
		"--start", start, "--max-messages", "2000", "--anomaly-ratio", "0.02", "--bad-ratio", "0.03")
	m := simulateReport.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no report in:\n%s", out)
	}
	good, bad := atoi(t, m[1]), atoi(t, m[2])
	if good+bad != 2000 || bad != 60 {
		t.Fatalf("simulate sent %d good and %d bad messages, want 2000 with 60 bad:\n%s", good, bad, out)
	}
	s.WaitConsumedN(2000, time.Minute)
	// simulate's bad messages are of every quarantine kind.
	e2e.CheckStreamExact(t, s.Stack, s.Prod, s.Topic, e2e.StreamExpect{Produced: 2000, Quarantined: int64(bad)})
	if st := s.Status(); st.LastError != "" || st.LeaseFailures != 0 {
		t.Errorf("status shows failures: %d, last error %q", st.LeaseFailures, st.LastError)
	}
}

// TestStreamLeaseWithRevokedCredentials: while the stream runs, the SCRAM
// credentials of its user are deleted. The lease fails with the
// authentication error, the status shows it, and the lease is restarted
// with a growing backoff rather than in a storm. Once the credentials are
// restored, the stream catches up and every message landed exactly once.
func TestStreamLeaseWithRevokedCredentials(t *testing.T) {
	s, sec, brokers := secureStreamStack(t, "SCRAM-SHA-256")
	run := s.Start(workflows.StreamInput{Leases: 1, LeaseDuration: time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	defer s.TC.CancelWorkflow(context.Background(), run.GetID(), "")
	s.Produce(600)
	s.WaitConsumed(time.Minute)

	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTLSConfig(sec.Certs.ClientTLS("")),
		kgo.SASL(plain.Auth{User: testenv.KafkaAdminUser, Pass: testenv.KafkaAdminPassword}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	ctx := context.Background()
	if _, err := adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: sec.User, Mechanism: kadm.ScramSha256}}, nil); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := time.Now()
	const want = "authentication: SASL authentication failed (check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)"
	st := s.StatusUntil("showing the authentication error", func(st workflows.StreamStatus) bool {
		return strings.Contains(st.LastError, want)
	})
	attemptsAtError := st.LeaseAttempts
	time.Sleep(15 * time.Second)
	st = s.Status()
	// The backoff doubles from 1s (1, 2, 4, 8 s...): in 15 s a lease that
	// fails at once is restarted at most 5 times; a storm would be hundreds.
	if more := st.LeaseAttempts - attemptsAtError; more < 1 || more > 5 {
		t.Errorf("%d lease restarts in the 15 s after the error, want between 1 and 5 (a backoff)", more)
	}
	if len(st.Leases) != 1 || st.Leases[0].Failures < 2 || !strings.Contains(st.Leases[0].LastError, want) {
		t.Errorf("lease status %+v, want consecutive failures and the authentication error", st.Leases)
	}
	t.Logf("revoked credentials: error shown %s after the revocation; %d lease attempts, %d failures",
		time.Since(revoked).Round(time.Second), st.LeaseAttempts, st.LeaseFailures)

	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: sec.User, Mechanism: kadm.ScramSha256,
		Iterations: 4096, Password: sec.Password}}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	s.Produce(400)
	s.WaitConsumed(90 * time.Second)
	s.CheckExact()
}
