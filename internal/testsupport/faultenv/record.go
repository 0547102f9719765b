package faultenv

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// Figures are what one scenario injected and measured, for
// docs/RELIABILITY.md.
type Figures struct {
	Scenario string `json:"scenario"`
	// Faults is how many faults were injected.
	Faults int `json:"faults"`
	// Messages are the messages produced (stream) or readings loaded
	// (batch) under the faults.
	Messages int64 `json:"messages"`
	// Lost and Duplicated are counted against the exact expectation.
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	// Recovery is the longest time from the end of a fault to full
	// progress again (stream: the lag back to 0, or the lease running;
	// batch: the run completing), as the scenario defines it.
	Recovery  time.Duration `json:"-"`
	RecoveryS float64       `json:"recovery_s"`
	Notes     string        `json:"notes,omitempty"`
	Passed    bool          `json:"passed"`
	Elapsed   float64       `json:"elapsed_s"`
}

var (
	recordMu sync.Mutex
	recorded []Figures
)

// Record keeps f for the results file; the test's outcome is filled in
// when it ends.
func Record(t *testing.T, f Figures) {
	t.Helper()
	start := time.Now()
	if f.Scenario == "" {
		f.Scenario = t.Name()
	}
	f.RecoveryS = f.Recovery.Round(100 * time.Millisecond).Seconds()
	t.Logf("figures: %s: %d faults, %d messages, lost %d, duplicated %d, recovery %.1fs %s",
		f.Scenario, f.Faults, f.Messages, f.Lost, f.Duplicated, f.RecoveryS, f.Notes)
	t.Cleanup(func() {
		f.Passed = !t.Failed()
		f.Elapsed = time.Since(start).Seconds()
		recordMu.Lock()
		defer recordMu.Unlock()
		recorded = append(recorded, f)
	})
}

// Suite is the figures of one run of the fault suite.
type Suite struct {
	ElapsedS  float64   `json:"elapsed_s"`
	Passed    bool      `json:"passed"`
	Scenarios []Figures `json:"scenarios"`
}

// Main runs the fault tests and writes the figures of every scenario to
// path (bench/results/faults.json by convention) with the machine's
// description.
func Main(m *testing.M, path string) int {
	start := time.Now()
	code := m.Run()
	recordMu.Lock()
	defer recordMu.Unlock()
	if len(recorded) == 0 {
		return code
	}
	sort.Slice(recorded, func(i, j int) bool { return recorded[i].Scenario < recorded[j].Scenario })
	r := benchutil.Result{Benchmark: "faults", RanAt: start.UTC().Truncate(time.Second), Machine: benchutil.Describe(context.Background(), nil),
		Figures: Suite{ElapsedS: time.Since(start).Round(time.Second).Seconds(), Passed: code == 0, Scenarios: recorded}}
	if err := benchutil.Write(path, r); err != nil {
		fmt.Fprintf(os.Stderr, "faults: write %s: %v\n", path, err)
	} else {
		fmt.Printf("faults: figures of %d scenarios in %s\n", len(recorded), path)
	}
	return code
}
