package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// broker is one `devstack kafka` process.
type broker struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	exited         chan error
}

func startBroker(t *testing.T, dir string, port, partitions int, topic string) *broker {
	t.Helper()
	b := &broker{exited: make(chan error, 1)}
	b.cmd = exec.Command(devstackBin, "kafka", "--dir", dir, "--port", strconv.Itoa(port),
		"--topic", topic, "--partitions", strconv.Itoa(partitions))
	b.cmd.Dir = t.TempDir()
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	// The broker dies with the test binary even if the test is killed.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.exited
		b.exited <- nil // later stops see it gone
	})
	return b
}

// stop sends SIGTERM and returns the exit error.
func (b *broker) stop(t *testing.T) error {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.exited:
		b.exited <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not stop within 30s after SIGTERM; stderr:\n%s", b.stderr.String())
		return nil
	}
}

// waitPartitions waits until the broker lists topic and returns its
// partition count.
func waitPartitions(t *testing.T, b *broker, addr, topic string) int {
	t.Helper()
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-b.exited:
			b.exited <- err
			t.Fatalf("broker exited (%v); stderr:\n%s", err, b.stderr.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := topicPartitions(ctx, adm, topic)
		cancel()
		if err == nil && n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not listed within 30s (last error %v); stderr:\n%s", topic, err, b.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type storedRecord struct {
	Partition  int32
	Offset     int64
	Key, Value string
}

func sortRecords(rs []storedRecord) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Partition != rs[j].Partition {
			return rs[i].Partition < rs[j].Partition
		}
		return rs[i].Offset < rs[j].Offset
	})
}

func produce(t *testing.T, addr, topic string, n int) []storedRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "DEV-%03d", i%17), Value: fmt.Appendf(nil, `{"seq":%d}`, i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := cl.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	var out []storedRecord
	for _, r := range results {
		out = append(out, storedRecord{r.Record.Partition, r.Record.Offset, string(r.Record.Key), string(r.Record.Value)})
	}
	sortRecords(out)
	return out
}

func consumeAll(t *testing.T, addr, topic string, want int) []storedRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []storedRecord
	for len(out) < want {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the timeout", len(out), want)
		}
		fetches.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			out = append(out, storedRecord{r.Partition, r.Offset, string(r.Key), string(r.Value)})
		})
	}
	sortRecords(out)
	return out
}

// TestKafkaBrokerKeepsRecordsAcrossRestart runs the broker as `up` does
// and checks that a SIGTERM-and-restart keeps records, offsets and the
// partition count, that raising the count grows the topic, and that
// lowering it is refused with a clear message.
func TestKafkaBrokerKeepsRecordsAcrossRestart(t *testing.T) {
	testenv.Integration(t) // real processes
	t.Parallel()
	dir := stateDir(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	const topic = "readings-test"

	b := startBroker(t, dir, port, 4, topic)
	if got := waitPartitions(t, b, addr, topic); got != 4 {
		t.Fatalf("fresh broker: topic has %d partitions, want 4", got)
	}
	produced := produce(t, addr, topic, 100)
	if err := b.stop(t); err != nil {
		t.Fatalf("broker exit after SIGTERM: %v; stderr:\n%s", err, b.stderr.String())
	}
	wantOut := fmt.Sprintf("kafka: dev broker (kfake) listening on %s, data in %s; topic %s has 4 partitions\nkafka: stopped, state saved in %s\n",
		addr, filepath.Join(dir, "kafka"), topic, filepath.Join(dir, "kafka"))
	if diff := cmp.Diff(wantOut, b.stdout.String()); diff != "" {
		t.Errorf("broker stdout (-want +got):\n%s", diff)
	}

	b = startBroker(t, dir, port, 4, topic)
	if got := waitPartitions(t, b, addr, topic); got != 4 {
		t.Fatalf("restarted broker: topic has %d partitions, want 4", got)
	}
	if diff := cmp.Diff(produced, consumeAll(t, addr, topic, 100)); diff != "" {
		t.Fatalf("records after restart (-want +got):\n%s", diff)
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("broker exit after SIGTERM: %v", err)
	}

	// More partitions configured: the topic grows and keeps its records.
	b = startBroker(t, dir, port, 6, topic)
	if got := waitPartitions(t, b, addr, topic); got != 6 {
		t.Fatalf("broker restarted with 6 partitions: topic has %d", got)
	}
	if diff := cmp.Diff(produced, consumeAll(t, addr, topic, 100)); diff != "" {
		t.Fatalf("records after growing the topic (-want +got):\n%s", diff)
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("broker exit after SIGTERM: %v", err)
	}

	// Fewer: Kafka cannot drop partitions, so the broker refuses to start.
	b = startBroker(t, dir, port, 3, topic)
	var err error
	select {
	case err = <-b.exited:
		b.exited <- err
	case <-time.After(30 * time.Second):
		t.Fatal("broker with fewer partitions than its data did not exit")
	}
	if !isExitError(err) {
		t.Fatalf("broker with fewer partitions: exit %v, want status 1", err)
	}
	wantErr := fmt.Sprintf("devstack: topic %s has 6 partitions, but KAFKA_PARTITIONS=3: set KAFKA_PARTITIONS=6, or recreate the topic (the broker's data is in %s; delete it to start empty)\n",
		topic, filepath.Join(dir, "kafka"))
	if diff := cmp.Diff(wantErr, b.stderr.String()); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}
