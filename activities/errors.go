package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
)

// Types of the application errors the activities and the workflows raise:
// failures that retrying cannot fix, unless said otherwise.
const (
	// ErrTypeInvalidData: PostgreSQL rejected the data (a constraint, a
	// value out of a type's range), or the staged readings cannot be read
	// as readings (a time twice for a device).
	ErrTypeInvalidData = "InvalidData"
	// ErrTypeStagingLost: the run's staging is gone (its marker is
	// missing, or it holds fewer rows than Transform wrote), as after a
	// PostgreSQL crash empties the unlogged staging tables. The batch
	// workflow re-creates its staging and re-runs what was lost.
	ErrTypeStagingLost = "StagingLost"
	// ErrTypeSourceSchema: a source table lacks a column the batch reads,
	// or is missing (MySQL errors 1054 and 1146, PostgreSQL 42703 and
	// 42P01): its schema changed under the pipeline.
	ErrTypeSourceSchema = "SourceSchema"
	// ErrTypeInvalidInput: a workflow or activity input that cannot work.
	ErrTypeInvalidInput = "InvalidInput"
	// ErrTypeLeaseFenced: a newer consumer lease owns the partition.
	ErrTypeLeaseFenced = "LeaseFenced"
	// ErrTypeModelRefused: the anomaly model cannot score the features
	// (its feature schema differs from dwh.ml_features', or MODEL_PATH is
	// not a model). The batch records it and finishes: the run's data is
	// loaded and exported.
	ErrTypeModelRefused = "ModelRefused"
	// ErrTypeFactsRefused (retryable): the fact table refused rows a
	// transform wrote itself (a constraint, or another run's facts of the
	// window); the next attempt stages the shard instead.
	ErrTypeFactsRefused = "FactsRefused"
)

// Classify turns an activity's failure into what Temporal should do with
// it: the failures of ErrType* become non-retryable application errors of
// that type; everything else (a refused connection, a timeout) is left to
// the retry policy. The ErrorClassifier interceptor applies it to every
// activity, so activities return their errors as they are.
func Classify(err error) error {
	var appErr *temporal.ApplicationError
	switch {
	case err == nil, errors.As(err, &appErr):
		return err
	case errors.Is(err, warehouse.ErrStagingLost):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeStagingLost, err)
	case errors.Is(err, warehouse.ErrSourceSchema):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeSourceSchema, err)
	case errors.Is(err, sink.ErrLeaseFenced):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeLeaseFenced, err)
	case store.IsDataError(err), errors.Is(err, warehouse.ErrInvalidStagedReadings):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidData, err)
	}
	return err
}

// ErrorClassifier is the worker interceptor that applies Classify to the
// error of every activity.
func ErrorClassifier() interceptor.WorkerInterceptor { return &errorClassifier{} }

type errorClassifier struct {
	interceptor.WorkerInterceptorBase
}

func (*errorClassifier) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &classifyingInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type classifyingInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

func (c *classifyingInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := c.Next.ExecuteActivity(ctx, in)
	return res, Classify(err)
}
