package metrics

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// SecondsBuckets are the bucket bounds of the Temporal SDK's latency
// histograms (OpenTelemetry's defaults are for milliseconds).
var SecondsBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// TemporalHandler returns a metrics handler for the Temporal SDK's client
// and workers that exports into the registry through OpenTelemetry. The
// names follow Prometheus conventions explicitly: counters end in _total
// and timers are histograms in seconds named _seconds
// (temporal_activity_schedule_to_start_latency_seconds), without scope
// labels or target_info. docs/metrics.md lists the ones the dashboards use.
func (r *Registry) TemporalHandler(log *slog.Logger) (client.MetricsHandler, error) {
	exp, err := otelprom.New(otelprom.WithRegisterer(r.reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
	if err != nil {
		return nil, fmt.Errorf("temporal sdk metrics: %w", err)
	}
	seconds := sdkmetric.NewView(sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: SecondsBuckets}})
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(seconds))
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                provider.Meter("temporal-sdk-go"),
		UseMonotonicCounters: true,
		OnError: func(err error) {
			if log != nil {
				log.Warn("temporal sdk metric", "error", err)
			}
		},
	}), nil
}
