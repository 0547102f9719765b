package batch

import "testing"

func TestFactSums(t *testing.T) {
	a := FactSums{Rows: 3, Anomalies: 1, Quality: "2.75", Checksum: "1152921504606846975"}
	b := FactSums{Rows: 2, Anomalies: 0, Quality: "1.5000", Checksum: "1152921504606846976"}
	sum, err := FactSums{}.Add(a)
	if err != nil {
		t.Fatal(err)
	}
	if sum, err = sum.Add(b); err != nil {
		t.Fatal(err)
	}
	want := FactSums{Rows: 5, Anomalies: 1, Quality: "4.2500", Checksum: "2305843009213693951"}
	if sum != want {
		t.Fatalf("sum %+v; want %+v", sum, want)
	}
	if got := sum.FactChecksum(); got != "5:2305843009213693951" {
		t.Fatalf("checksum %s", got)
	}
	if dq, err := sum.DQScore(); err != nil || dq != 0.85 {
		t.Fatalf("dq %v %v; want 0.85", dq, err)
	}
	if dq, err := (FactSums{}).DQScore(); err != nil || dq != 0 {
		t.Fatalf("empty dq %v %v", dq, err)
	}
	if (FactSums{}).FactChecksum() != "0:0" {
		t.Fatalf("empty checksum %s", FactSums{}.FactChecksum())
	}
	if _, err := a.Add(FactSums{Quality: "x"}); err == nil {
		t.Fatal("a quality sum that is not a decimal: no error")
	}
}
