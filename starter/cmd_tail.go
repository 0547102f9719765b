package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
)

func init() {
	register(command{
		Name:    "tail",
		Summary: "print the messages on the Kafka topic with partition, offset, timestamp and key (no consumer group)",
		Run:     runTail,
	})
}

// tailTimestamp is Kafka's record timestamp precision: milliseconds.
const tailTimestamp = "2006-01-02T15:04:05.000Z07:00"

func runTail(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "tail", "[--max-messages N] [--from-beginning|--from-end] [--partition P]")
	maxMessages := fs.Int64("max-messages", 0, "stop after this many messages; 0 to print until Ctrl-C")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest message of each partition (the default)")
	fromEnd := fs.Bool("from-end", false, "print only the messages that arrive from now on")
	partition := fs.Int("partition", -1, "read only this partition (default: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *fromBeginning && *fromEnd:
		return fmt.Errorf("%w: --from-beginning and --from-end exclude each other", errUsage)
	case *maxMessages < 0:
		return fmt.Errorf("%w: --max-messages %d: want 0 (no limit) or more", errUsage, *maxMessages)
	}

	cfg := app.Cfg.Kafka
	watch := kafka.NewConnWatch(cfg)
	cl, err := kafka.NewClient(cfg, nil, watch.Opt())
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := probeTopic(ctx, cl, watch, cfg.BootstrapServers, cfg.Topic); err != nil {
		return err
	}
	parts, err := kafka.Partitions(ctx, cl, cfg.Topic)
	if err != nil {
		return err
	}
	if *partition >= 0 {
		if !slices.Contains(parts, int32(*partition)) {
			return fmt.Errorf("%w: --partition %d: topic %s has partitions 0..%d", errUsage, *partition, cfg.Topic, len(parts)-1)
		}
		parts = []int32{int32(*partition)}
	}
	start := kgo.NewOffset().AtStart()
	if *fromEnd {
		start = kgo.NewOffset().AtEnd()
	}
	assign := make(map[int32]kgo.Offset, len(parts))
	for _, p := range parts {
		assign[p] = start
	}
	// Direct assignment, no group: tailing never moves anyone's offsets.
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: assign})

	out := bufio.NewWriter(app.Out)
	defer func() { _ = out.Flush() }()
	var printed int64
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C: a normal end
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if fetchErr == nil {
				fetchErr = fmt.Errorf("kafka: fetch %s/%d: %w", topic, p, err)
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		for it := fetches.RecordIter(); !it.Done(); {
			writeTailLine(out, it.Next())
			printed++
			if *maxMessages > 0 && printed >= *maxMessages {
				return nil
			}
		}
		// Flush per poll, so a pipe or a terminal sees messages as they come.
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// writeTailLine prints one record on one line. Keys and values are printed
// as they are, except bytes that are not UTF-8, which are escaped as \xNN
// so a malformed message cannot garble the terminal.
func writeTailLine(w *bufio.Writer, r *kgo.Record) {
	fmt.Fprintf(w, "partition=%d offset=%d timestamp=%s key=", r.Partition, r.Offset, r.Timestamp.UTC().Format(tailTimestamp))
	writeEscaped(w, r.Key)
	w.WriteString(" value=")
	writeEscaped(w, r.Value)
	w.WriteByte('\n')
}

func writeEscaped(w *bufio.Writer, b []byte) {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size != 1 {
			i += size
			continue
		}
		w.Write(b[start:i])
		w.Write([]byte{'\\', 'x', hex[b[i]>>4], hex[b[i]&0xF]})
		i++
		start = i
	}
	w.Write(b[start:])
}
