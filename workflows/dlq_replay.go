package workflows

import (
	"cmp"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

// DLQReplayWorkflowName is the replay workflow's registered name.
const DLQReplayWorkflowName = "DLQReplayWorkflow"

// replayPagesPerRun is how many pages one run replays before it continues
// as new, which keeps its history short.
const replayPagesPerRun = 500

// DLQReplayInput selects the dead letters to replay. See
// activities.ReplayPageInput; Progress carries the counts over a
// Continue-As-New and is empty at the start.
type DLQReplayInput struct {
	Topic           string        `json:"topic"`
	Reason          string        `json:"reason,omitempty"`
	Since           time.Time     `json:"since,omitzero"`
	Until           time.Time     `json:"until,omitzero"`
	Partition       int32         `json:"partition"` // negative: every partition
	AllowedLateness time.Duration `json:"allowed_lateness"`
	// Window is the stream's window length; 0 means the worker's
	// STREAM_WINDOW.
	Window   time.Duration `json:"window,omitempty"`
	PageSize int           `json:"page_size,omitempty"`
	DryRun   bool          `json:"dry_run,omitempty"`
	// HeartbeatTimeout is the page activity's; 0 means DefaultHeartbeat.
	HeartbeatTimeout time.Duration      `json:"heartbeat_timeout,omitempty"`
	Progress         *DLQReplayProgress `json:"progress,omitempty"`
}

// DLQReplayProgress is the replay's progress query and its result: the
// pages done, the last dead-letter id replayed, and the counts by stored
// reason and in all.
type DLQReplayProgress struct {
	DryRun bool                           `json:"dry_run"`
	Pages  int                            `json:"pages"`
	LastID int64                          `json:"last_id"`
	Done   bool                           `json:"done"`
	Counts map[string]ingest.ReplayCounts `json:"counts"`
	Total  ingest.ReplayCounts            `json:"total"`
}

// DLQReplayWorkflow replays the selected dead letters page by page, one
// ReplayDeadLetters activity (one transaction) per page, in id order.
// Progress answers the "progress" query after each page. A dry run
// changes nothing: pages are read and decided only.
func DLQReplayWorkflow(ctx workflow.Context, in DLQReplayInput) (*DLQReplayProgress, error) {
	p := in.Progress
	if p == nil {
		p = &DLQReplayProgress{DryRun: in.DryRun, Counts: map[string]ingest.ReplayCounts{}}
	}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (DLQReplayProgress, error) { return *p, nil }); err != nil {
		return nil, err
	}
	if !in.DryRun && in.Progress == nil {
		emitLineage(ctx, activities.LineageInput{Job: activities.JobDLQReplay, EventType: activities.LineageStart})
	}
	res, err := replayPages(ctx, in, p)
	if in.DryRun || workflow.IsContinueAsNewError(err) {
		return res, err
	}
	if err != nil {
		emitLineage(ctx, activities.LineageInput{Job: activities.JobDLQReplay, EventType: activities.LineageFail, Error: err.Error()})
		return res, err
	}
	emitLineage(ctx, activities.LineageInput{Job: activities.JobDLQReplay, EventType: activities.LineageComplete,
		InputRows:  map[string]int64{"public.stream_dead_letters": p.Total.DeadLetters},
		OutputRows: map[string]int64{"public.sensor_readings": p.Total.Landed, "public.stream_anomalies": p.Total.Anomalies}})
	return res, nil
}

// replayPages replays the pages after p.LastID into p, continuing as new
// after replayPagesPerRun of them.
func replayPages(ctx workflow.Context, in DLQReplayInput, p *DLQReplayProgress) (*DLQReplayProgress, error) {
	var a *activities.Stream
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    cmp.Or(max(in.HeartbeatTimeout, 0), DefaultHeartbeat),
		RetryPolicy:         retry(10, time.Second, time.Minute),
	})
	for pages := 0; ; pages++ {
		if pages == replayPagesPerRun {
			in.Progress = p
			return nil, workflow.NewContinueAsNewError(ctx, DLQReplayWorkflow, in)
		}
		var res activities.ReplayPageResult
		err := workflow.ExecuteActivity(actx, a.ReplayDeadLetters, activities.ReplayPageInput{
			Topic: in.Topic, Reason: in.Reason, Since: in.Since, Until: in.Until, Partition: in.Partition,
			AfterID: p.LastID, PageSize: in.PageSize, AllowedLateness: in.AllowedLateness, Window: in.Window, DryRun: in.DryRun,
		}).Get(ctx, &res)
		if err != nil {
			return p, err
		}
		if res.Done {
			p.Done = true
			return p, nil
		}
		p.Pages++
		p.LastID = res.LastID
		for reason, c := range res.Counts {
			sum := p.Counts[reason]
			sum.Add(c)
			p.Counts[reason] = sum
			p.Total.Add(c)
		}
	}
}
