package model_test

import (
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/model"
)

func Example() {
	p := func(v float64) *float64 { return &v }
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	// hour builds a device-hour of a temperature sensor: a quiet hour, or
	// one with a spike of 4 °C that the rules flagged.
	hour := func(device string, h int, spike bool) model.Row {
		r := model.Row{
			DeviceID: device, Hour: start.Add(time.Duration(h) * time.Hour), DeviceType: "TEMP",
			Count: 60, Mean: p(21), Std: p(0.2), Min: p(20.6), Max: p(21.4), Slope: p(0.001),
			PrevHourMean: p(21.05), MeanQuality: 1,
		}
		if spike {
			r.Std, r.Max, r.AnomalyCount, r.MeanQuality, r.Truth = p(0.55), p(25), 1, 0.99, true
		}
		return r
	}
	var train []model.Row
	for h := range 48 {
		train = append(train, hour("TEMP-001", h, h%6 == 0), hour("TEMP-002", h, h%8 == 3))
	}
	m, err := model.Train(train, model.Options{Kind: model.KindLogistic})
	if err != nil {
		fmt.Println(err)
		return
	}
	test := []model.Row{hour("TEMP-003", 48, false), hour("TEMP-003", 49, true)}
	var scores []float64
	var truth []bool
	for i := range test {
		s := m.Score(&test[i])
		fmt.Printf("%s %s score %.3f flagged %v\n", test[i].DeviceID, test[i].Hour.Format("15:04"), s, m.Flag(&test[i]))
		scores, truth = append(scores, s), append(truth, test[i].Truth)
	}
	fmt.Println(model.Evaluate(scores, truth, m.Threshold))
	fmt.Println(m.CheckSchema(model.Inputs()))
	// Output:
	// TEMP-003 00:00 score 0.002 flagged false
	// TEMP-003 01:00 score 1.000 flagged true
	// rows=2 positives=1 TP=1 FP=0 FN=0 precision=1.0000 recall=1.0000 PR-AUC=1.0000
	// <nil>
}
