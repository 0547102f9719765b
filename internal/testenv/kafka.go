package testenv

import (
	"testing"

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
