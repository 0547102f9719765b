package batch_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		start, end time.Time
		ref        time.Time
		test       bool
		want       batch.Window
		err        string
	}{
		{name: "empty: the day before the scheduled time", ref: at("2026-11-21T02:00:00Z"),
			want: batch.Window{Start: at("2026-11-20T00:00:00Z"), End: at("2026-11-21T00:00:00Z")}},
		{name: "a late run still processes the day before its schedule", ref: at("2026-11-21T23:59:59Z"),
			want: batch.Window{Start: at("2026-11-20T00:00:00Z"), End: at("2026-11-21T00:00:00Z")}},
		{name: "a reference in another zone counts in UTC", ref: at("2026-11-21T01:00:00+02:00"),
			want: batch.Window{Start: at("2026-11-19T00:00:00Z"), End: at("2026-11-20T00:00:00Z")}},
		{name: "given", start: at("2026-11-01T00:00:00Z"), end: at("2026-11-04T00:00:00Z"),
			want: batch.Window{Start: at("2026-11-01T00:00:00Z"), End: at("2026-11-04T00:00:00Z")}},
		{name: "test mode keeps the first hour", start: at("2026-11-01T00:00:00Z"), end: at("2026-11-02T00:00:00Z"), test: true,
			want: batch.Window{Start: at("2026-11-01T00:00:00Z"), End: at("2026-11-01T01:00:00Z")}},
		{name: "test mode leaves a shorter window", start: at("2026-11-01T00:00:00Z"), end: at("2026-11-01T00:30:00Z"), test: true,
			want: batch.Window{Start: at("2026-11-01T00:00:00Z"), End: at("2026-11-01T00:30:00Z")}},
		{name: "one bound", start: at("2026-11-01T00:00:00Z"), err: "window_start and window_end must be given together"},
		{name: "reversed", start: at("2026-11-02T00:00:00Z"), end: at("2026-11-01T00:00:00Z"),
			err: "window start 2026-11-02T00:00:00Z is not before end 2026-11-01T00:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := batch.Resolve(c.start, c.end, c.ref, c.test)
			if c.err != "" {
				if !errors.Is(err, batch.ErrInvalidWindow) || err.Error() != "invalid window: "+c.err {
					t.Errorf("error %v, want invalid window: %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestChunksAndPages(t *testing.T) {
	t.Parallel()
	day := batch.UTCDay(at("2026-11-20T13:00:00Z"))
	var got []string
	for _, c := range day.Chunks(time.Hour, 6*time.Hour) {
		got = append(got, fmt.Sprintf("%d %s-%s", c.ID, c.From.Format("02T15"), c.To.Format("02T15")))
	}
	want := []string{"0 19T23-20T05", "1 20T05-20T11", "2 20T11-20T17", "3 20T17-20T23", "4 20T23-21T00"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chunks (-want +got):\n%s", diff)
	}
	three := batch.Window{Start: at("2026-11-01T00:00:00Z"), End: at("2026-11-03T12:00:00Z")}
	got = nil
	for _, p := range three.Pages(three.Start.Add(-time.Hour)) {
		got = append(got, p.Start.Format("02T15")+"-"+p.End.Format("02T15"))
	}
	if diff := cmp.Diff([]string{"31T23-01T23", "01T23-02T23", "02T23-03T12"}, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
}

func TestFeatureSpansAndHours(t *testing.T) {
	t.Parallel()
	w := batch.Window{Start: at("2026-11-20T00:00:00Z"), End: at("2026-11-21T00:00:00Z")}
	if got, want := w.FeatureData(), (batch.Window{Start: at("2026-11-19T22:00:00Z"), End: w.End}); got != want {
		t.Errorf("feature data %v, want %v", got, want)
	}
	if got, want := w.FeatureHours(), (batch.Window{Start: at("2026-11-19T23:00:00Z"), End: at("2026-11-20T23:00:00Z")}); got != want {
		t.Errorf("feature hours %v, want %v", got, want)
	}
	odd := batch.Window{Start: at("2026-11-20T06:07:00Z"), End: at("2026-11-20T12:00:00Z")}
	if got, want := odd.Hours(), (batch.Window{Start: at("2026-11-20T06:00:00Z"), End: at("2026-11-20T12:00:00Z")}); got != want {
		t.Errorf("hours %v, want %v", got, want)
	}
	if got := batch.HourCeil(at("2026-11-20T12:00:01Z")); !got.Equal(at("2026-11-20T13:00:00Z")) {
		t.Errorf("ceil %v", got)
	}
}

func ExampleScheduleTimes() {
	// A backfill of the data days Nov 1..7 runs the schedule's actions of
	// Nov 2..8: each processes the day before it.
	r := batch.ScheduleTimes(at("2026-11-01T00:00:00Z"), at("2026-11-07T00:00:00Z"))
	fmt.Println(r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339))
	// Output: 2026-11-02T00:00:00Z 2026-11-09T00:00:00Z
}
