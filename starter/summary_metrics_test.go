package main

import "testing"

func TestMetricsURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"":               "",
		"127.0.0.1:9464": "http://127.0.0.1:9464",
		":9464":          "http://127.0.0.1:9464",
		"0.0.0.0:9464":   "http://127.0.0.1:9464",
		"[::]:9464":      "http://127.0.0.1:9464",
		"[::1]:9464":     "http://[::1]:9464",
		"worker-0:9464":  "http://worker-0:9464",
	} {
		if got := metricsURL(addr); got != want {
			t.Errorf("metricsURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
