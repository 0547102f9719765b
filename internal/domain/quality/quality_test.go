package quality_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/quality"
)

func TestScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flags     quality.Flags
		wantNames []string
		wantScore float64
	}{
		{0, []string{}, 1},
		{quality.Null, []string{"null"}, 0},
		{quality.OutOfRange, []string{"out_of_range"}, 0.4},
		{quality.Duplicate, []string{"duplicate"}, 0.5},
		{quality.Stuck, []string{"stuck"}, 0.6},
		{quality.Gap, []string{"gap"}, 0.8},
		{quality.Stuck | quality.Gap, []string{"stuck", "gap"}, 0.4},
		{quality.OutOfRange | quality.Stuck, []string{"out_of_range", "stuck"}, 0},
		{quality.Duplicate | quality.Gap, []string{"duplicate", "gap"}, 0.3},
		{quality.OutOfRange | quality.Duplicate, []string{"out_of_range", "duplicate"}, 0},
		{quality.Null | quality.Gap, []string{"null", "gap"}, 0},
		{quality.Null | quality.OutOfRange | quality.Duplicate | quality.Stuck | quality.Gap, []string{"null", "out_of_range", "duplicate", "stuck", "gap"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.flags.String(), func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.wantNames, tt.flags.Strings()); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if got := tt.flags.Score(); got != tt.wantScore {
				t.Errorf("Score() = %v, want %v", got, tt.wantScore)
			}
		})
	}
}

func TestPenalty(t *testing.T) {
	t.Parallel()
	got := []float64{
		quality.Penalty(quality.Null), quality.Penalty(quality.OutOfRange), quality.Penalty(quality.Duplicate),
		quality.Penalty(quality.Stuck), quality.Penalty(quality.Gap), quality.Penalty(quality.OutOfRange | quality.Stuck | quality.Gap),
	}
	if diff := cmp.Diff([]float64{1, 0.6, 0.5, 0.4, 0.2, 1.2}, got); diff != "" {
		t.Errorf("penalties (-want +got):\n%s", diff)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		names   []string
		want    quality.Flags
		wantErr string
	}{
		{nil, 0, ""},
		{[]string{"gap", "null"}, quality.Null | quality.Gap, ""},
		{[]string{"stuck", "duplicate", "out_of_range"}, quality.OutOfRange | quality.Duplicate | quality.Stuck, ""},
		{[]string{"late"}, 0, `quality: unknown flag "late"`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.names), func(t *testing.T) {
			t.Parallel()
			got, err := quality.ParseFlags(tt.names)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got != tt.want || gotErr != tt.wantErr {
				t.Errorf("ParseFlags = %v, %q; want %v, %q", got, gotErr, tt.want, tt.wantErr)
			}
		})
	}
}

func ExampleFlags_Score() {
	flags := quality.Stuck | quality.Gap
	fmt.Println(flags.Strings(), flags.Score())
	fmt.Println(quality.Flags(0).Strings(), quality.Flags(0).Score())
	// Output:
	// [stuck gap] 0.4
	// [] 1
}
