package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/window"
	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "stream start", Summary: "start the stream ETL of the topic (idempotent: a running stream is left as it is)", Run: runStreamStart})
	register(command{Name: "stream pause", Summary: "pause the stream: leases commit their open batch and stop fetching within 2s", Run: runStreamSignal(workflows.SignalPause)})
	register(command{Name: "stream resume", Summary: "resume a paused stream from the committed offsets", Run: runStreamSignal(workflows.SignalResume)})
	register(command{Name: "stream stop", Summary: "stop the stream: drain every partition up to its current end, then complete", Run: runStreamSignal(workflows.SignalStop)})
	register(command{Name: "stream status", Summary: "show the stream's state, per-partition offsets, lag, rates and dead letters (--watch refreshes every 2s)", Run: runStreamStatus})
}

func runStreamStart(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "stream start", "[flags]")
	topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic to consume")
	leases := fs.Int("leases", app.Cfg.Stream.Leases, "consumer leases sharing the partitions")
	leaseDuration := fs.Duration("lease-duration", app.Cfg.Stream.LeaseDuration, "how long one lease consumes before the next takes over")
	maxRecords := fs.Int("max-batch-records", app.Cfg.Stream.MaxBatchRecords, "records per micro-batch (one transaction)")
	maxWait := fs.Duration("max-batch-wait", app.Cfg.Stream.MaxBatchWait, "longest a micro-batch stays open")
	win := fs.Duration("window", app.Cfg.Stream.Window, "length of the tumbling event-time windows: whole seconds that divide one hour (30s, 1m, 5m, 15m, 1h...)")
	lateness := fs.Duration("allowed-lateness", app.Cfg.Stream.AllowedLateness, "how late an event may be for its window")
	debug := fs.Bool("debug", false, "echo every decoded record to the worker log while writing")
	testMode := fs.Bool("test-mode", false, "decode and log every record, write nothing, never advance the offsets")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *leases < 1 || *leaseDuration <= 0 || *maxRecords < 1 || *maxWait <= 0 || *lateness < 0 {
		return fmt.Errorf("%w: --leases, --max-batch-records must be at least 1, --lease-duration and --max-batch-wait positive, --allowed-lateness not negative", errUsage)
	}
	if err := windowFlag(*win); err != nil {
		return err
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	id := workflows.StreamWorkflowID(*topic)
	if desc, err := tc.DescribeWorkflow(ctx, id, ""); err == nil &&
		desc.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		runID := desc.WorkflowExecution.RunID
		state := "unknown"
		if st, err := queryStreamStatus(ctx, tc, id); err == nil {
			state = st.State
		}
		fmt.Fprintf(app.Out, "stream %s is already running (%s), with the options it was started with\n", id, state)
		if state == workflows.StreamPaused {
			fmt.Fprintln(app.Out, "  it is paused: starter stream resume")
		}
		fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, id, runID))
		return nil
	}
	in := workflows.StreamInput{
		Topic: *topic, Leases: *leases, LeaseDuration: *leaseDuration, MaxBatchRecords: *maxRecords,
		MaxBatchWait: *maxWait, AllowedLateness: lateness, Window: *win, Debug: *debug, TestMode: *testMode,
	}
	// USE_EXISTING makes a start that races another one attach to it.
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                app.Cfg.Temporal.StreamTaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.StreamWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start stream: %w", err)
	}
	mode := ""
	switch {
	case *testMode:
		mode = ", test mode (nothing is written)"
	case *debug:
		mode = ", debug (records echoed to the worker log)"
	}
	fmt.Fprintf(app.Out, "stream %s started on topic %s: %d leases of %s, batches of up to %d records or %s, %s windows, allowed lateness %s%s\n",
		id, *topic, *leases, *leaseDuration, *maxRecords, *maxWait, *win, *lateness, mode)
	fmt.Fprintf(app.Out, "Temporal UI: %s\n", runURL(app, id, run.GetRunID()))
	fmt.Fprintln(app.Out, "Follow it with: starter stream status --watch")
	return nil
}

// windowFlag checks a --window flag as STREAM_WINDOW is checked.
func windowFlag(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: --window %s: must be positive", errUsage, d)
	}
	if err := window.Length(d).Validate(); err != nil {
		return fmt.Errorf("%w: --window %s: %w", errUsage, d, err)
	}
	return nil
}

// runStreamSignal sends a control signal to the stream of --topic.
func runStreamSignal(signal string) func(ctx context.Context, app *App, args []string) error {
	return func(ctx context.Context, app *App, args []string) error {
		name := "stream " + signal
		fs := newFlags(app, name, "[--topic T] [--no-wait]")
		topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic of the stream")
		noWait := fs.Bool("no-wait", false, "send the signal and return at once, without waiting for it to take effect")
		if err := parse(fs, args); err != nil {
			return err
		}
		tc, err := app.Temporal(ctx)
		if err != nil {
			return err
		}
		id := workflows.StreamWorkflowID(*topic)
		notRunning := func(err error) error {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) || strings.Contains(err.Error(), "already completed") {
				return fmt.Errorf("no running stream %s: start it with starter stream start", id)
			}
			return fmt.Errorf("%s %s: %w", signal, id, err)
		}
		if *noWait {
			if err := tc.SignalWorkflow(ctx, id, "", signal, nil); err != nil {
				return notRunning(err)
			}
			fmt.Fprintf(app.Out, "sent %s to %s\n", signal, id)
			return nil
		}
		// The Update answers once it took effect: pause when every lease
		// stopped and committed, resume when the leases run, stop when
		// every partition is drained.
		h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: signal, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			return notRunning(err)
		}
		var rep workflows.ControlReply
		if err := h.Get(ctx, &rep); err != nil {
			return notRunning(err)
		}
		fmt.Fprintf(app.Out, "%s %s: %s; %s\n", signal, id, rep.State, rep.Message)
		parts := make([]string, len(rep.Offsets))
		for i, o := range rep.Offsets {
			parts[i] = fmt.Sprintf("%d=%d", o.Partition, o.NextOffset)
		}
		fmt.Fprintf(app.Out, "committed offsets (partition=next offset): %s\n", strings.Join(parts, " "))
		return nil
	}
}

// statusQueryTimeout bounds the status query: a worker answers it, so it
// goes unanswered while no worker of the stream's queue reaches Temporal.
const statusQueryTimeout = 10 * time.Second

func queryStreamStatus(ctx context.Context, tc client.Client, id string) (workflows.StreamStatus, error) {
	var st workflows.StreamStatus
	qctx, cancel := context.WithTimeout(ctx, statusQueryTimeout)
	defer cancel()
	v, err := tc.QueryWorkflow(qctx, id, "", workflows.QueryStatus)
	if err != nil {
		if ctx.Err() == nil && qctx.Err() != nil {
			return st, unansweredStatus(ctx, tc, id)
		}
		return st, err
	}
	return st, v.Get(&st)
}

// unansweredStatus explains a status query no worker answered, with what
// the Temporal server itself knows of the stream's leases.
func unansweredStatus(ctx context.Context, tc client.Client, id string) error {
	msg := fmt.Sprintf("no worker answered the status query of %s within %s: is a worker of its task queue running, and can it reach Temporal?", id, statusQueryTimeout)
	dctx, cancel := context.WithTimeout(ctx, statusQueryTimeout)
	defer cancel()
	desc, err := tc.DescribeWorkflow(dctx, id, "")
	if err != nil {
		return fmt.Errorf("%s (describe: %w)", msg, err)
	}
	var lines []string
	for _, a := range desc.RawResponse.GetPendingActivities() {
		line := fmt.Sprintf("  %s %s: %s", a.GetActivityType().GetName(), a.GetActivityId(), strings.ToLower(strings.TrimPrefix(a.GetState().String(), "PENDING_ACTIVITY_STATE_")))
		if hb := a.GetLastHeartbeatTime(); hb != nil {
			line += fmt.Sprintf(", last heartbeat %s ago", time.Since(hb.AsTime()).Round(time.Second))
		}
		if w := a.GetLastWorkerIdentity(); w != "" {
			line += " from " + w
		}
		if f := a.GetLastFailure(); f != nil {
			line += ", last failure: " + f.GetMessage()
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return errors.New(msg + " The server lists no running lease.")
	}
	return fmt.Errorf("%s The server's view of the leases:\n%s", msg, strings.Join(lines, "\n"))
}

func runStreamStatus(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "stream status", "[--topic T] [--watch]")
	topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic of the stream")
	watch := fs.Bool("watch", false, "refresh every 2s until Ctrl-C")
	interval := fs.Duration("interval", 2*time.Second, "refresh interval of --watch")
	caughtUp := fs.Duration("wait-caught-up", 0, "wait up to this long for a running stream with no lag on any partition, then print")
	if err := parse(fs, args); err != nil {
		return err
	}
	tc, err := app.Temporal(ctx)
	if err != nil {
		return err
	}
	id := workflows.StreamWorkflowID(*topic)
	if *caughtUp > 0 {
		if err := waitCaughtUp(ctx, app, tc, id, *topic, *caughtUp); err != nil {
			return err
		}
	}
	clearScreen := *watch && isTerminal(app.Out)
	for {
		st, err := queryStreamStatus(ctx, tc, id)
		switch {
		case err != nil && (ctx.Err() != nil || ending(ctx)):
			return nil // Ctrl-C (or the caller's deadline) while querying
		case err != nil:
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return fmt.Errorf("no stream %s: start it with starter stream start", id)
			}
			return fmt.Errorf("query %s: %w", id, err)
		}
		live, lerr := liveLag(ctx, app, *topic)
		if lerr == nil {
			withLiveOffsets(&st, live)
		}
		if clearScreen {
			fmt.Fprint(app.Out, "\033[H\033[2J")
		}
		printStreamStatus(app.Out, st, time.Now())
		if lerr != nil {
			fmt.Fprintf(app.Out, "(offsets and lag as last reported by the leases: %v)\n", lerr)
		}
		if !*watch || st.State == workflows.StreamStopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
		if !clearScreen {
			fmt.Fprintln(app.Out)
		}
	}
}

// waitCaughtUp waits until the stream runs and the committed offsets in the
// database (the truth, not the leases' last reports) reach the partitions'
// high watermarks read from Kafka now.
func waitCaughtUp(ctx context.Context, app *App, tc client.Client, id, topic string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lag, state := int64(-1), ""
	for {
		st, err := queryStreamStatus(ctx, tc, id)
		if err == nil {
			state = st.State
			if live, lerr := liveLag(ctx, app, topic); lerr == nil {
				lag = live.total
				if st.State == workflows.StreamRunning && lag == 0 {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s not caught up after %s (state %s, lag %d)", id, timeout, state, lag)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// liveLagTimeout bounds the reading of the live offsets.
const liveLagTimeout = 5 * time.Second

// liveOffsets are the committed offsets (database) and high watermarks
// (Kafka) of a topic, read now.
type liveOffsets struct {
	committed map[int32]ingest.Offset
	high      map[int32]int64
	total     int64 // summed lag
}

func liveLag(ctx context.Context, app *App, topic string) (liveOffsets, error) {
	// Unreachable brokers or database make the clients retry until the
	// context ends: the status is printed without live offsets after
	// liveLagTimeout rather than hang.
	ctx, cancel := context.WithTimeout(ctx, liveLagTimeout)
	defer cancel()
	var l liveOffsets
	ts, err := app.Timescale(ctx)
	if err != nil {
		return l, err
	}
	if l.committed, err = sink.ReadOffsets(ctx, ts, topic); err != nil {
		return l, err
	}
	cl, err := app.Kafka()
	if err != nil {
		return l, err
	}
	if l.high, err = kafka.HighWatermarks(ctx, cl, topic); err != nil {
		return l, err
	}
	for p, hw := range l.high {
		if d := hw - l.committed[p].NextOffset; d > 0 {
			l.total += d
		}
	}
	return l, nil
}

// withLiveOffsets replaces the offsets of the status query, which are the
// leases' last reports (none while paused), with the database's committed
// offsets and Kafka's high watermarks, read now.
func withLiveOffsets(st *workflows.StreamStatus, l liveOffsets) {
	seen := map[int32]bool{}
	for i := range st.Partitions {
		p := &st.Partitions[i]
		seen[p.Partition] = true
		if c, ok := l.committed[p.Partition]; ok {
			p.Consumed, p.NextOffset, p.Counters, p.Watermark, p.Epoch = true, c.NextOffset, c.Counters, c.Watermark, c.Epoch
		}
		if hw, ok := l.high[p.Partition]; ok {
			p.HighWatermark = hw
		}
		p.Lag = max(0, p.HighWatermark-p.NextOffset)
	}
	for part, hw := range l.high {
		if !seen[part] {
			c, ok := l.committed[part]
			st.Partitions = append(st.Partitions, activities.PartitionProgress{Partition: part, Consumed: ok, NextOffset: c.NextOffset,
				HighWatermark: hw, Lag: max(0, hw-c.NextOffset), Counters: c.Counters, Watermark: c.Watermark, Epoch: c.Epoch})
		}
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	st.Lag = l.total
	st.Totals = ingest.Counters{}
	for _, p := range st.Partitions {
		st.Totals.Add(p.Counters)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printStreamStatus prints the status query answer as a summary and two
// tables: partitions and lease slots. A partition never consumed shows "-"
// as its committed offset; its lag counts from offset 0.
func printStreamStatus(w io.Writer, st workflows.StreamStatus, now time.Time) {
	flags := ""
	if st.TestMode {
		flags += "  [test mode: nothing is written]"
	}
	if st.Debug {
		flags += "  [debug]"
	}
	fmt.Fprintf(w, "stream %s: %s%s   (as of %s)\n", st.WorkflowID, st.State, flags, now.UTC().Format(time.RFC3339))
	windows := ""
	if st.Window > 0 {
		windows = fmt.Sprintf(" %s windows,", st.Window)
	}
	fmt.Fprintf(w, "topic %s: %d partitions, %d leases,%s %.1f messages/s, lag %d\n", st.Topic, len(st.Partitions), len(st.Leases), windows, st.MessagesPerSecond, st.Lag)
	t := st.Totals
	fmt.Fprintf(w, "records %d: inserted %d, duplicates %d, dead letters %d; anomalies %d\n", t.Records, t.Inserted, t.Duplicates, t.DeadLetters, t.Anomalies)
	lastErr := "none"
	if st.LastError != "" {
		lastErr = fmt.Sprintf("%s (%s)", st.LastError, st.LastErrorAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "lease attempts %d, failures %d; last error: %s\n", st.LeaseAttempts, st.LeaseFailures, lastErr)
	if len(st.Problems) == 0 {
		fmt.Fprintln(w, "problems now: none")
	} else {
		fmt.Fprintln(w, "problems now:")
		for _, p := range st.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if st.Runs > 0 {
		fmt.Fprintf(w, "continued as new %d times since %s\n", st.Runs, st.StartedAt.UTC().Format(time.RFC3339))
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nPARTITION\tCOMMITTED\tHIGH WATERMARK\tLAG\tMSG/S\tRECORDS\tINSERTED\tDUPLICATES\tDEAD LETTERS\tANOMALIES\tEPOCH\tEVENT-TIME WATERMARK\t")
	for _, p := range st.Partitions {
		committed, wm := "-", "-"
		if p.Consumed {
			committed = fmt.Sprint(p.NextOffset)
		}
		if !p.Watermark.IsZero() {
			wm = p.Watermark.UTC().Format(time.RFC3339)
		}
		c := p.Counters
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n",
			p.Partition, committed, p.HighWatermark, p.Lag, p.Rate, c.Records, c.Inserted, c.Duplicates, c.DeadLetters, c.Anomalies, p.Epoch, wm)
	}
	tw.Flush()

	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nLEASE\tPARTITIONS\tSTATE\tATTEMPTS\tFAILURES\tLAST END\tLAST ERROR")
	for _, l := range st.Leases {
		state := "idle"
		switch {
		case l.Running && l.Drain:
			state = "draining"
		case l.Running:
			state = "consuming"
		case !l.RetryAt.IsZero():
			state = "retry at " + l.RetryAt.UTC().Format(time.RFC3339)
		}
		parts := strings.Trim(strings.ReplaceAll(fmt.Sprint(l.Partitions), " ", ","), "[]")
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", l.Slot, parts, state, l.Attempts, l.Failures, dash(l.LastEnd), dash(l.LastError))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ending reports whether ctx ends within a second: the server may answer a
// call whose deadline it carries with DeadlineExceeded a little before ctx
// itself is done.
func ending(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < time.Second
}
