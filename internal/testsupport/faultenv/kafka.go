package faultenv

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// ProxiedKafka is a one-broker kfake cluster whose metadata advertises a
// Link instead of the broker itself, so every client that follows the
// metadata (the worker) talks to the broker through the link. Direct is a
// client option that dials the broker itself: for the test's producer and
// checks, which the link's faults must not touch.
type ProxiedKafka struct {
	Cluster *kfake.Cluster
	Link    *Link
	Direct  kgo.Opt
}

// Kafka starts a ProxiedKafka with topic seeded with partitions
// partitions; opts are added to the cluster's.
func (p *Proxies) Kafka(t testing.TB, topic string, partitions int32, opts ...kfake.Opt) *ProxiedKafka {
	t.Helper()
	testenv.Integration(t)
	brokerPort, err := temporalx.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	broker := net.JoinHostPort("127.0.0.1", strconv.Itoa(brokerPort))
	link := p.Link("kafka", broker)
	advertised := link.Addr()
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(brokerPort), kfake.SeedTopics(partitions, topic),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return advertisedListener{Listener: ln, addr: advertised}, nil
		})}, opts...)...)
	if err != nil {
		testenv.Unavailable(t, "kfake Kafka cluster", err)
	}
	t.Cleanup(cluster.Close)
	var d net.Dialer
	direct := kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if host == advertised {
			host = broker
		}
		return d.DialContext(ctx, network, host)
	})
	return &ProxiedKafka{Cluster: cluster, Link: link, Direct: direct}
}

// advertisedListener is a broker's listener that reports another address,
// the one kfake then advertises in its metadata.
type advertisedListener struct {
	net.Listener
	addr string
}

func (l advertisedListener) Addr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", l.addr)
	if err != nil {
		return l.Listener.Addr()
	}
	return a
}
