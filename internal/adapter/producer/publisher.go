package producer

import (
	"bufio"
	"context"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Message is one record to publish.
type Message struct {
	Key       []byte
	Value     []byte
	Timestamp time.Time // the Kafka record timestamp: the reading's time
}

// Publisher delivers messages. Publish hands one over and returns; done is
// called exactly once with the outcome, possibly later and from another
// goroutine, and must not block. The publisher owns msg's slices until
// done. Flush waits until every message handed over has its outcome.
type Publisher interface {
	Publish(ctx context.Context, msg Message, done func(error))
	Flush(ctx context.Context) error
}

// KafkaPublisher publishes to the default produce topic of a franz-go
// client, built with kafka.ProducerOptions: batched, compressed and
// idempotent. Records are keyed by device id, so the key partitioner keeps
// each device's readings in order on one partition.
type KafkaPublisher struct {
	Client *kgo.Client
}

// Publish produces msg asynchronously; done receives the broker's answer.
//
// The record is produced under a context without cancellation: a record
// handed over is delivered even when ctx ends (Ctrl-C), because kgo would
// otherwise fail every buffered record of the partition. Run bounds the
// records in flight below the client's buffer, so Produce does not block
// for buffer space.
func (p KafkaPublisher) Publish(ctx context.Context, msg Message, done func(error)) {
	rec := &kgo.Record{Key: msg.Key, Value: msg.Value, Timestamp: msg.Timestamp}
	p.Client.Produce(context.WithoutCancel(ctx), rec, func(_ *kgo.Record, err error) { done(err) })
}

// Flush waits for every produced record's acknowledgement.
func (p KafkaPublisher) Flush(ctx context.Context) error { return p.Client.Flush(ctx) }

// WriterPublisher writes each message as one line, "key value", instead of
// sending it: the simulator's test mode. Values never hold a raw newline
// (Encode escapes control characters and the corruptions add none), so a
// line is a message.
type WriterPublisher struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// NewWriterPublisher writes to w.
func NewWriterPublisher(w io.Writer) *WriterPublisher {
	return &WriterPublisher{w: bufio.NewWriterSize(w, 64<<10)}
}

// Publish writes the line and reports the write's outcome.
func (p *WriterPublisher) Publish(_ context.Context, msg Message, done func(error)) {
	p.mu.Lock()
	p.w.Write(msg.Key)
	p.w.WriteByte(' ')
	p.w.Write(msg.Value)
	err := p.w.WriteByte('\n')
	p.mu.Unlock()
	done(err)
}

// Flush flushes the buffered lines.
func (p *WriterPublisher) Flush(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Flush()
}
