package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/serviceerror"

	"github.com/iot-etl/iot-etl/workflows"
)

// snapshot is what the dashboard shows, read every sampleEvery by one
// goroutine however many pages are open: the pages and /api/snapshot
// serve the latest one.
type snapshot struct {
	At          time.Time      `json:"at"`
	Stream      streamView     `json:"stream"`
	DeadLetters []reasonCount  `json:"dead_letters"`
	Batch       *runView       `json:"batch,omitempty"`
	Freshness   string         `json:"freshness"`
	History     []historyPoint `json:"history"`
	Problems    []string       `json:"problems,omitempty"`
}

type streamView struct {
	ID         string          `json:"id"`
	URL        string          `json:"url"`
	State      string          `json:"state"` // running, paused, stopping, stopped, unknown
	Rate       float64         `json:"rate"`  // records committed per second since the previous sample
	Records    int64           `json:"records"`
	Inserted   int64           `json:"inserted"`
	Dead       int64           `json:"dead"`
	Lag        int64           `json:"lag"`
	Partitions []partitionView `json:"partitions"`
}

type partitionView struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed"`
	High      int64 `json:"high"`
	Lag       int64 `json:"lag"`
}

type reasonCount struct {
	Reason string `json:"reason"`
	N      int64  `json:"n"`
}

type runView struct {
	RunID      string     `json:"run_id"`
	WorkflowID string     `json:"workflow_id"`
	URL        string     `json:"url"`
	Status     string     `json:"status"`
	Window     string     `json:"window"`
	Rows       int64      `json:"rows"`
	Rejects    int64      `json:"rejects"`
	DQ         string     `json:"dq"`
	Error      string     `json:"error,omitempty"`
	Detection  []ruleView `json:"detection"`
}

type ruleView struct {
	Rule      string `json:"rule"`
	Precision string `json:"precision"`
	Recall    string `json:"recall"`
}

type historyPoint struct {
	At   time.Time `json:"at"`
	Rate float64   `json:"rate"`
	Lag  int64     `json:"lag"`
}

// deadLetterView is one row of the stream page's latest dead letters.
type deadLetterView struct {
	Partition int32
	Offset    int64
	Reason    string
	Error     string
	Raw       string // quoted as a Go string: control bytes and invalid UTF-8 escaped
	At        time.Time
}

const (
	sampleEvery   = 2 * time.Second
	historyLength = 450 // 15 minutes of samples
)

// sampler keeps the latest snapshot and the last 15 minutes of throughput
// and lag.
type sampler struct {
	app   *App
	topic string

	mu      sync.Mutex
	latest  snapshot
	history []historyPoint
}

// run samples until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// sample reads everything once. Each source that fails is a problem on
// the page; the others are still shown.
func (s *sampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := time.Now()
	snap := snapshot{At: now, Freshness: "no successful run yet"}
	problem := func(what string, err error) {
		snap.Problems = append(snap.Problems, what+": "+err.Error())
	}
	snap.Stream = s.stream(ctx, problem)
	var err error
	if snap.DeadLetters, err = s.deadLetterReasons(ctx); err != nil {
		problem("dead letters", err)
	}
	if snap.Batch, err = s.latestRun(ctx); err != nil {
		problem("batch runs", err)
	}
	if last, err := s.lastSuccess(ctx); err != nil {
		problem("batch runs", err)
	} else if !last.IsZero() {
		snap.Freshness = fmt.Sprintf("%s ago (%s)", now.Sub(last).Round(time.Second), last.UTC().Format(time.RFC3339))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if prev := s.latest; !prev.At.IsZero() && snap.Stream.Records >= prev.Stream.Records {
		snap.Stream.Rate = float64(snap.Stream.Records-prev.Stream.Records) / now.Sub(prev.At).Seconds()
	}
	s.history = append(s.history, historyPoint{At: now, Rate: snap.Stream.Rate, Lag: snap.Stream.Lag})
	if len(s.history) > historyLength {
		s.history = s.history[len(s.history)-historyLength:]
	}
	snap.History = append([]historyPoint(nil), s.history...)
	s.latest = snap
}

// stream is the stream workflow's state with the offsets committed in the
// database and Kafka's end offsets (the same numbers as starter stream
// status).
func (s *sampler) stream(ctx context.Context, problem func(string, error)) streamView {
	id := workflows.StreamWorkflowID(s.topic)
	v := streamView{ID: id, URL: workflowURL(s.app, id), State: "unknown"}
	tc, err := s.app.Temporal(ctx)
	if err == nil {
		var st workflows.StreamStatus
		st, err = queryStreamStatus(ctx, tc, id)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			v.State, err = workflows.StreamStopped, nil
		case err == nil:
			v.State = st.State
		}
	}
	if err != nil {
		problem("stream status", err)
	}
	live, err := liveLag(ctx, s.app, s.topic)
	if err != nil {
		problem("offsets", err)
		return v
	}
	parts := map[int32]*partitionView{}
	for p, hw := range live.high {
		parts[p] = &partitionView{Partition: p, High: hw}
	}
	for p, o := range live.committed {
		pv, ok := parts[p]
		if !ok {
			pv = &partitionView{Partition: p}
			parts[p] = pv
		}
		pv.Committed = o.NextOffset
		v.Records += o.Counters.Records
		v.Inserted += o.Counters.Inserted
		v.Dead += o.Counters.DeadLetters
	}
	for _, pv := range parts {
		pv.Lag = max(0, pv.High-pv.Committed)
		v.Lag += pv.Lag
		v.Partitions = append(v.Partitions, *pv)
	}
	sort.Slice(v.Partitions, func(i, j int) bool { return v.Partitions[i].Partition < v.Partitions[j].Partition })
	return v
}

// The dead letters' queries.
const (
	deadLetterReasonsSQL = `SELECT reason, count(*) FROM public.stream_dead_letters WHERE topic = $1 GROUP BY reason ORDER BY reason`
	latestDeadLettersSQL = `SELECT partition, "offset", reason, error, raw, received_at FROM public.stream_dead_letters
		WHERE topic = $1 ORDER BY id DESC LIMIT $2`
)

// deadLetterReasons counts the topic's dead letters by reason (an index-only
// scan of stream_dead_letters_topic_reason_idx).
func (s *sampler) deadLetterReasons(ctx context.Context) ([]reasonCount, error) {
	ts, err := s.app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := ts.Query(ctx, deadLetterReasonsSQL, s.topic)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (reasonCount, error) {
		var c reasonCount
		err := r.Scan(&c.Reason, &c.N)
		return c, err
	})
}

// latestRun is the most recently started batch run (etl_runs_window_idx
// does not help; the table holds one row per run, a few a day).
func (s *sampler) latestRun(ctx context.Context) (*runView, error) {
	ts, err := s.app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	var r runView
	var from, to time.Time
	var dq *float64
	var errText *string
	var detection []byte
	err = ts.QueryRow(ctx, `SELECT run_id, workflow_id, status, window_start, window_end, rows_loaded, rejects, dq_score, error, detection
		FROM dwh.etl_runs ORDER BY started_at DESC LIMIT 1`).Scan(&r.RunID, &r.WorkflowID, &r.Status, &from, &to, &r.Rows, &r.Rejects, &dq, &errText, &detection)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.URL = runURL(s.app, r.WorkflowID, r.RunID)
	r.Window = from.UTC().Format("2006-01-02 15:04") + " – " + to.UTC().Format("2006-01-02 15:04") + " UTC"
	r.DQ = "–"
	if dq != nil {
		r.DQ = strconv.FormatFloat(*dq, 'f', 4, 64)
	}
	if errText != nil {
		r.Error = *errText
	}
	var scores map[string]struct {
		Precision float64 `json:"precision"`
		Recall    float64 `json:"recall"`
	}
	if err := json.Unmarshal(detection, &scores); err != nil {
		return nil, fmt.Errorf("run %s: detection: %w", r.RunID, err)
	}
	for rule, sc := range scores {
		r.Detection = append(r.Detection, ruleView{Rule: rule, Precision: strconv.FormatFloat(sc.Precision, 'f', 3, 64),
			Recall: strconv.FormatFloat(sc.Recall, 'f', 3, 64)})
	}
	sort.Slice(r.Detection, func(i, j int) bool { return r.Detection[i].Rule < r.Detection[j].Rule })
	return &r, nil
}

// lastSuccess is when the latest successful batch run finished; zero when
// none did.
func (s *sampler) lastSuccess(ctx context.Context) (time.Time, error) {
	ts, err := s.app.Timescale(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var t *time.Time
	if err := ts.QueryRow(ctx, `SELECT max(finished_at) FROM dwh.etl_runs WHERE status = 'succeeded'`).Scan(&t); err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

// latestDeadLetters are the topic's newest dead letters (a backward scan
// of the primary key, stopping after limit rows of the topic).
func latestDeadLetters(ctx context.Context, app *App, topic string, limit int) ([]deadLetterView, error) {
	ts, err := app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := ts.Query(ctx, latestDeadLettersSQL, topic, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadLetterView, error) {
		var d deadLetterView
		var raw []byte
		err := r.Scan(&d.Partition, &d.Offset, &d.Reason, &d.Error, &raw, &d.At)
		const show = 300
		if len(raw) > show {
			d.Raw = strconv.Quote(string(raw[:show])) + fmt.Sprintf(" … (%d bytes)", len(raw))
		} else {
			d.Raw = strconv.Quote(string(raw))
		}
		return d, err
	})
}
