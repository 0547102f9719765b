package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseDensities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		list    string
		want    []int
		wantErr bool
	}{
		{list: "1,2,10", want: []int{1, 2, 10}},
		{list: " 10 , 1 ", want: []int{10, 1}},
		{list: "", want: nil},
		{list: "0", wantErr: true},
		{list: "-2", wantErr: true},
		{list: "1.5", wantErr: true},
		{list: "2,2", wantErr: true},
		{list: "60000001", wantErr: true}, // under 1ns per device for 1000 devices
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			t.Parallel()
			got, err := parseDensities(tt.list, 1000)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseDensities(%q) error %v, want error %v", tt.list, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseDensities(%q) (-want +got):\n%s", tt.list, diff)
			}
		})
	}
}

func TestDensityInterval(t *testing.T) {
	t.Parallel()
	for d, want := range map[int]time.Duration{1: time.Minute, 2: 30 * time.Second, 10: 6 * time.Second} {
		if got := densityInterval(d); got != want {
			t.Errorf("densityInterval(%d) = %s, want %s", d, got, want)
		}
	}
}
