package main

import (
	"context"
	"strings"
	"testing"
)

// TestSeedResetsWhatWasBuiltFromTheOldReadings: a new seed empties the
// warehouse and the stream sink unless --keep-derived, and keeps offsets.
func TestSeedResetsWhatWasBuiltFromTheOldReadings(t *testing.T) {
	s, env := testStack(t)
	ctx := context.Background()
	mark := func() {
		t.Helper()
		for _, q := range []string{
			`INSERT INTO dwh.etl_runs (run_id, workflow_id, window_start, window_end, status, started_at) VALUES ('r1', 'w1', now(), now() + interval '1h', 'succeeded', now())`,
			`INSERT INTO public.stream_offsets (topic, partition, next_offset, records, inserted) VALUES ('t', 0, 42, 9, 8)
			 ON CONFLICT (topic, partition) DO UPDATE SET records = 9, inserted = 8`,
		} {
			if _, err := s.Timescale.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(q string) int64 {
		t.Helper()
		var n int64
		if err := s.Timescale.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	mark()
	code, out, errOut := starter(t, env, "seed", "--devices", "3", "--days", "1", "--end", "2026-11-02")
	if code != 0 {
		t.Fatalf("seed: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "reset      19 tables built from the previous readings") {
		t.Errorf("seed output does not report the reset:\n%s", out)
	}
	if n := count(`SELECT count(*) FROM dwh.etl_runs`); n != 0 {
		t.Errorf("etl_runs kept %d rows", n)
	}
	if n := count(`SELECT next_offset FROM public.stream_offsets WHERE topic = 't'`); n != 42 {
		t.Errorf("stream offset = %d, want 42 (kept)", n)
	}
	if n := count(`SELECT records + inserted FROM public.stream_offsets WHERE topic = 't'`); n != 0 {
		t.Errorf("stream counters = %d, want 0 (they counted rows that are gone)", n)
	}
	mark()
	if code, out, _ := starter(t, env, "seed", "--devices", "3", "--days", "1", "--end", "2026-11-02", "--keep-derived"); code != 0 || strings.Contains(out, "reset") {
		t.Fatalf("seed --keep-derived: exit %d\n%s", code, out)
	}
	if n := count(`SELECT count(*) FROM dwh.etl_runs`); n != 1 {
		t.Errorf("--keep-derived: etl_runs has %d rows, want 1", n)
	}
}
