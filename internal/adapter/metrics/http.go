package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Check is one dependency /readyz probes.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Health answers /healthz and /readyz. The process is ready once
// SetStarted was called (the Temporal pollers run) and while every check
// answers within its timeout.
type Health struct {
	Checks []Check
	// Timeout bounds each probe; 0 means 2s.
	Timeout time.Duration
	started atomic.Bool
}

// SetStarted marks the pollers as started.
func (h *Health) SetStarted() { h.started.Store(true) }

// NotReady probes every check in parallel and returns what is not ready,
// one line each, in the checks' order; none means ready.
func (h *Health) NotReady(ctx context.Context) []string {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	problems := make([]string, len(h.Checks))
	var wg sync.WaitGroup
	for i, c := range h.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := c.Probe(cctx); err != nil {
				problems[i] = c.Name + ": " + err.Error()
			}
		})
	}
	wg.Wait()
	var out []string
	if !h.started.Load() {
		out = append(out, "temporal: the workers' pollers are not started")
	}
	for _, p := range problems {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

var descReady = desc("worker_ready", "1 when the worker is ready (what /readyz answers 200 to): its pollers are started and every database answers.")

// Describe implements prometheus.Collector: the health is the series
// iotetl_worker_ready, probed at each scrape.
func (h *Health) Describe(ch chan<- *prometheus.Desc) { ch <- descReady }

// Collect implements prometheus.Collector.
func (h *Health) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(len(h.NotReady(context.Background())) == 0))
}

// Mux serves /metrics from reg, /healthz (the process answers) and
// /readyz (200 "ready", or 503 with what is not ready).
func Mux(reg *Registry, h *Health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", reg.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if problems := h.NotReady(r.Context()); len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:\n"+strings.Join(problems, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Server is the worker's HTTP endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Listen binds addr (host:port; port 0 picks a free one) so that a busy
// port fails the worker's start.
func Listen(addr string, handler http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR=%s: %w", addr, err)
	}
	return &Server{srv: &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}, ln: ln, log: log}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("metrics endpoint stopped", "error", err)
	}
}

// Shutdown stops the server, letting a running scrape finish for up to 5s.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}
