package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

func init() {
	register(command{Name: "dlq ls", Summary: "list the stream's dead letters: counts by reason, then the latest rows", Run: runDLQList})
}

func runDLQList(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "dlq ls", "[--limit N] [--reason R] [--topic T]")
	limit := fs.Int("limit", 20, "how many of the latest dead letters to show")
	reason := fs.String("reason", "", "only this reason: "+reasonList())
	topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic of the stream")
	width := fs.Int("width", 60, "bytes of each raw message to show")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 || *width < 1 {
		return fmt.Errorf("%w: --limit must not be negative and --width must be positive", errUsage)
	}
	if *reason != "" && !slices.Contains(reading.Reasons(), reading.Reason(*reason)) {
		return fmt.Errorf("%w: --reason %q: want one of %s", errUsage, *reason, reasonList())
	}
	pool, err := app.Timescale(ctx)
	if err != nil {
		return err
	}
	counts, err := sink.DeadLetterCounts(ctx, pool, *topic, *reason)
	if err != nil {
		return err
	}
	if len(counts) == 0 {
		fmt.Fprintf(app.Out, "no dead letters on %s%s\n", *topic, map[bool]string{true: " with reason " + *reason}[*reason != ""])
		return nil
	}
	fmt.Fprintf(app.Out, "dead letters on %s by reason:\n", *topic)
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tCOUNT\tLATEST")
	var total int64
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", c.Reason, c.Count, c.Latest.Format(time.RFC3339))
		total += c.Count
	}
	fmt.Fprintf(tw, "total\t%d\t\n", total)
	tw.Flush()
	if *limit == 0 {
		return nil
	}
	rows, err := sink.LatestDeadLetters(ctx, pool, *topic, *reason, *limit)
	if err != nil {
		return err
	}
	fmt.Fprintf(app.Out, "\nlatest %d:\n", len(rows))
	tw = tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tREASON\tRECORD TIME\tERROR\tRAW")
	for _, d := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", d.Partition, d.Offset, d.Reason, d.RecordTime.Format(time.RFC3339Nano),
			oneLine(d.Error), excerpt(d.Raw, *width))
	}
	return tw.Flush()
}

func reasonList() string {
	names := make([]string, 0, len(reading.Reasons()))
	for _, r := range reading.Reasons() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// excerpt shows at most n bytes of raw, cut at a character boundary, as a
// quoted string with control characters and invalid UTF-8 escaped, so any
// message prints on one line; "…" marks a cut.
func excerpt(raw []byte, n int) string {
	cut := len(raw) > n
	if cut {
		raw = raw[:n]
		// Drop a character the cut split: the last lead byte and what
		// follows it when they are not a whole character.
		for k := 1; k < utf8.UTFMax && k <= len(raw); k++ {
			if utf8.RuneStart(raw[len(raw)-k]) {
				if !utf8.FullRune(raw[len(raw)-k:]) {
					raw = raw[:len(raw)-k]
				}
				break
			}
		}
	}
	s := strconv.Quote(string(raw))
	if cut {
		s += "…"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
