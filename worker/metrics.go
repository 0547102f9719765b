package main

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/metrics"
	"github.com/iot-etl/iot-etl/workflows"
)

// observe registers the worker's metrics and builds its health: the pools' statistics,
// the pipeline's state read at scrape time and, when the worker serves the
// stream, the topic's lag and the stream workflow's state. Every check of
// /readyz is a database the worker's activities need.
func observe(reg *metrics.Registry, d deps, serveStream bool) (*metrics.Health, func(), error) {
	pipeline := &metrics.Pipeline{Timescale: d.Timescale, Topic: d.cfg.Kafka.Topic}
	closeAll := func() {}
	if serveStream {
		cl, err := kafka.NewClient(d.cfg.Kafka, d.log)
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
		closeAll = cl.Close
		pipeline.EndOffsets = func(ctx context.Context, topic string) (map[int32]int64, error) {
			return kafka.HighWatermarks(ctx, cl, topic)
		}
		pipeline.StreamState = func(ctx context.Context, topic string) (string, error) {
			return streamState(ctx, d.tc, topic)
		}
	}
	if err := reg.Register(pipeline,
		metrics.PgxPools{"timescale": d.Timescale, "locations": d.Locations},
		metrics.SQLDB("devices", d.MySQL)); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	health := &metrics.Health{Checks: []metrics.Check{
		{Name: "timescale", Probe: d.Timescale.Ping},
		{Name: "locations", Probe: d.Locations.Ping},
		{Name: "devices", Probe: d.MySQL.PingContext},
	}}
	if err := reg.Register(health); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	return health, closeAll, nil
}

// streamState is the state the stream workflow of topic reports; a stream
// that was never started is stopped.
func streamState(ctx context.Context, tc client.Client, topic string) (string, error) {
	resp, err := tc.QueryWorkflow(ctx, workflows.StreamWorkflowID(topic), "", workflows.QueryStatus)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return workflows.StreamStopped, nil
	}
	if err != nil {
		return "", err
	}
	var st workflows.StreamStatus
	if err := resp.Get(&st); err != nil {
		return "", err
	}
	return st.State, nil
}
