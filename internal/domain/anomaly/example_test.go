package anomaly_test

import (
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/quality"
)

func ExampleClassifySet() {
	fmt.Println(anomaly.ClassifySet(anomaly.ZScore|anomaly.RateOfChange, 0))
	fmt.Println(anomaly.ClassifySet(anomaly.ZScore|anomaly.RateOfChange|anomaly.OutOfRange, quality.OutOfRange))
	fmt.Println(anomaly.ClassifySet(anomaly.Gap, quality.Null|quality.Gap))
	// Output:
	// [spike]
	// [out_of_range]
	// [gap null]
}

func ExampleScore() {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	truth := []anomaly.TruthEvent{
		{DeviceID: "TEMP-001", Kind: anomaly.KindStuck, Start: t0, End: t0.Add(29 * time.Minute)},
		// Readings 12:00..12:09 are missing: the reading at 12:10 reports the gap.
		{DeviceID: "TEMP-001", Kind: anomaly.KindGap, Start: t0.Add(2 * time.Hour), End: t0.Add(2*time.Hour + 9*time.Minute)},
	}
	var detections []anomaly.Detection
	for i := 9; i < 30; i++ { // stuck from the 10th equal value on
		detections = append(detections, anomaly.Detection{DeviceID: "TEMP-001", Time: t0.Add(time.Duration(i) * time.Minute), Kinds: []anomaly.Kind{anomaly.KindStuck}})
	}
	detections = append(detections, anomaly.Detection{DeviceID: "TEMP-001", Time: t0.Add(2*time.Hour + 10*time.Minute), Kinds: []anomaly.Kind{anomaly.KindGap}})
	scores := anomaly.Score(truth, detections, time.Minute)
	fmt.Print(anomaly.FormatMetrics(scores))
	// Output:
	// spike        TP=0 FP=0 events=0 found=0 FN=0 precision=1.000 recall=1.000
	// out_of_range TP=0 FP=0 events=0 found=0 FN=0 precision=1.000 recall=1.000
	// stuck        TP=21 FP=0 events=1 found=1 FN=0 precision=1.000 recall=1.000
	// gap          TP=1 FP=0 events=1 found=1 FN=0 precision=1.000 recall=1.000
	// null         TP=0 FP=0 events=0 found=0 FN=0 precision=1.000 recall=1.000
	// drift        TP=0 FP=0 events=0 found=0 FN=0 precision=1.000 recall=1.000
}
