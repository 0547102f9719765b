package main

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestKafkaSASLOverTLS: check and simulate work against brokers that
// require SASL (SCRAM-SHA-256 and PLAIN) over TLS; a wrong password, a
// wrong CA, TLS or SASL missing each fail at once, with the layer named,
// a non-zero exit, and no password in the output.
func TestKafkaSASLOverTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	s, base := testStack(t)
	for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			sec := testenv.KafkaSecurity{Certs: certs, Mechanism: mech, User: "etl-writer", Password: testenv.Password()}
			_, brokers := testenv.SecureKafka(t, s.Config.Kafka.Topic, 6, sec)
			good := sec.KafkaConfig(s.Config.Kafka, brokers)
			env := maps.Clone(base)
			maps.Copy(env, varsOf(config.Config{Kafka: good}, "KAFKA_"))

			code, out, errOut := starter(t, env, "check")
			if code != 0 {
				t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
			}
			if want := "topic " + s.Config.Kafka.Topic + ", 6 partitions (TLS, SASL " + mech + " as etl-writer)"; !strings.HasSuffix(componentLine(out, "Kafka"), want) {
				t.Errorf("Kafka line %q, want it to end with %q", componentLine(out, "Kafka"), want)
			}
			code, out, errOut = starter(t, env, "simulate", "--max-messages", "300", "--rate", "0", "--devices", "10")
			if code != 0 || !strings.Contains(out, "sent       300 messages") {
				t.Fatalf("simulate: exit %d\n%s%s", code, out, errOut)
			}
			cl, err := kafka.NewClient(good, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hwms, err := kafka.HighWatermarks(ctx, cl, s.Config.Kafka.Topic)
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, h := range hwms {
				total += h
			}
			if total != 300 {
				t.Errorf("the topic holds %d records, want the 300 sent", total)
			}

			wrong := func(name string, mutate func(k *config.Kafka), want string) {
				t.Run(name, func(t *testing.T) {
					k := good
					mutate(&k)
					env := maps.Clone(base)
					maps.Copy(env, varsOf(config.Config{Kafka: k}, "KAFKA_"))
					began := time.Now()
					code, out, errOut := starter(t, env, "check", "-timeout", "10s")
					line := componentLine(out, "Kafka")
					if code != 1 || !strings.Contains(line, "FAILED: "+want) {
						t.Errorf("check: exit %d, Kafka line %q; want 1 and %q", code, line, want)
					}
					code, out2, errOut2 := starter(t, env, "simulate", "--max-messages", "10", "--rate", "0", "--devices", "10")
					if code != 1 || !strings.Contains(errOut2, want) {
						t.Errorf("simulate: exit %d, stderr %q; want 1 and %q", code, errOut2, want)
					}
					if took := time.Since(began); took > 15*time.Second {
						t.Errorf("check and simulate took %s to fail, want fast failures", took)
					}
					for _, o := range []string{out, errOut, out2, errOut2} {
						if strings.Contains(o, sec.Password) || strings.Contains(o, "wrong-"+sec.Password) {
							t.Errorf("output contains the password: %s", o)
						}
					}
				})
			}
			wrong("wrong password", func(k *config.Kafka) { k.SASLPassword = config.Secret("wrong-" + sec.Password) },
				"authentication: SASL authentication failed (check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)")
			wrong("unknown user", func(k *config.Kafka) { k.SASLUsername = "nobody" },
				"authentication: SASL authentication failed (check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD)")
			wrong("wrong CA", func(k *config.Kafka) { k.TLS.CA = certs.OtherCA },
				"TLS: the server's certificate is signed by an unknown certificate authority (check KAFKA_TLS_CA)")
			wrong("wrong server name", func(k *config.Kafka) { k.TLS.ServerName = "kafka.example.com" },
				"TLS: the server's certificate does not match the server name (check KAFKA_TLS_SERVER_NAME)")
			wrong("TLS off", func(k *config.Kafka) { k.TLSOn, k.TLS = false, config.TLS{} },
				"TLS: the broker requires TLS (check KAFKA_TLS)")
		})
	}
}
