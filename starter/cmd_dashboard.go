package main

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/iot-etl/iot-etl/workflows"
)

func init() {
	register(command{Name: "dashboard", Summary: "serve the web dashboard on DASHBOARD_ADDR: the stream, its partitions and dead letters, the latest batch run; pause, resume or stop the stream", Run: runDashboard})
}

//go:embed web
var webFiles embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"sparkline": sparkline,
	"trend":     trend,
	"num": func(v *float64, prec int) string {
		if v == nil {
			return "–"
		}
		return strconv.FormatFloat(*v, 'f', prec, 64)
	},
	"act": func(token bool, signal, label string) actionView {
		return actionView{Token: token, Signal: signal, Label: label}
	},
	"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
}).ParseFS(webFiles, "web/*.html"))

func runDashboard(ctx context.Context, app *App, args []string) error {
	fs := newFlags(app, "dashboard", "[--addr host:port] [--topic T]")
	addr := fs.String("addr", app.Cfg.Dashboard.Addr, "listen address (DASHBOARD_ADDR)")
	topic := fs.String("topic", app.Cfg.Kafka.Topic, "Kafka topic of the stream")
	if err := parse(fs, args); err != nil {
		return err
	}
	d, err := newDashboard(app, *addr, *topic)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("DASHBOARD_ADDR=%s: %w", *addr, err)
	}
	fmt.Fprintf(app.Out, "dashboard on http://%s/\n", displayAddr(ln.Addr().String()))
	return d.serve(ctx, ln)
}

// dashboard is the web UI: pages rendered on the server from the latest
// snapshot, refreshed in place by app.js from /api/snapshot, and the
// stream's control actions.
type dashboard struct {
	app     *App
	topic   string
	token   string // required by actions when set
	sampler *sampler
}

// newDashboard refuses a listen address other than loopback without
// DASHBOARD_TOKEN: anyone who reaches the page could pause the stream.
func newDashboard(app *App, addr, topic string) (*dashboard, error) {
	token := app.Cfg.Dashboard.Token.Reveal()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("DASHBOARD_ADDR=%q: want host:port", addr)
	}
	if !isLoopback(host) && token == "" {
		return nil, fmt.Errorf("DASHBOARD_ADDR=%s is not a loopback address: set DASHBOARD_TOKEN, which every action will then require", addr)
	}
	return &dashboard{app: app, topic: topic, token: token, sampler: &sampler{app: app, topic: topic}}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// displayAddr is addr as a browser on this machine reaches it.
func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// serve samples and serves until ctx ends.
func (d *dashboard) serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.sampler.sample(ctx) // the first page shows data
	go d.sampler.run(ctx)
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (d *dashboard) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", d.page("overview.html", nil))
	mux.HandleFunc("GET /stream", d.page("stream.html", func(r *http.Request) (any, error) {
		return latestDeadLetters(r.Context(), d.app, d.topic, 50)
	}))
	mux.HandleFunc("GET /api/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(d.sampler.snapshot())
	})
	mux.HandleFunc("POST /actions/stream/{signal}", d.handle("/stream", d.streamAction))
	mux.HandleFunc("GET /fleet", d.page("fleet.html", func(r *http.Request) (any, error) {
		return fleet(r.Context(), d.app, r)
	}))
	mux.HandleFunc("GET /device/{id}", func(w http.ResponseWriter, r *http.Request) {
		data := d.pageData(r, "device")
		detail, err := deviceDetails(r.Context(), d.app, r)
		code := http.StatusOK
		switch {
		case errors.Is(err, errNoDevice):
			code = http.StatusNotFound
			data.Snap.Problems = append(data.Snap.Problems, "device "+r.PathValue("id")+": "+err.Error())
		case err != nil:
			data.Snap.Problems = append(data.Snap.Problems, err.Error())
		}
		data.Extra = detail
		d.render(w, code, "device.html", data)
	})
	mux.HandleFunc("GET /batch", d.page("batch.html", func(r *http.Request) (any, error) {
		return recentRuns(r.Context(), d.app, 50)
	}))
	mux.HandleFunc("POST /actions/batch/{signal}", d.handle("/batch", d.batchAction))
	mux.HandleFunc("POST /actions/schedule/{what}", d.handle("/batch", d.scheduleAction))
	return securityHeaders(mux)
}

// securityHeaders forbids inline scripts, framing and sniffing: every
// script is /static/app.js and every value reaches the page as text.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// pageData is what every page template gets.
type pageData struct {
	Page       string
	Snap       snapshot
	Extra      any
	Token      bool // the actions ask for the token
	TemporalUI string
	Topic      string
	Flash      string
	Confirm    *confirmView
}

func (d *dashboard) page(name string, extra func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data := d.pageData(r, strings.TrimSuffix(name, ".html"))
		if extra != nil {
			var err error
			if data.Extra, err = extra(r); err != nil {
				data.Snap.Problems = append(data.Snap.Problems, err.Error())
			}
		}
		d.render(w, http.StatusOK, name, data)
	}
}

func (d *dashboard) pageData(r *http.Request, page string) pageData {
	return pageData{Page: page, Snap: d.sampler.snapshot(), Token: d.token != "", TemporalUI: d.app.Cfg.Temporal.UIURL,
		Topic: d.topic, Flash: r.URL.Query().Get("done")}
}

func (d *dashboard) render(w http.ResponseWriter, code int, name string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		d.app.Log.Error("dashboard page", "page", name, "error", err)
	}
}

// actionView is one button of the stream page.
type actionView struct {
	Token         bool
	Signal, Label string
}

// action is one thing an operator does from the dashboard.
type action struct {
	Question, Detail string
	// Do does it and returns what to tell the operator.
	Do func(ctx context.Context) (string, error)
}

// confirmView is the confirmation page of an action: its question, and the
// form that posts the same fields again with confirm=yes.
type confirmView struct {
	Question, Detail, Action string
	Fields                   map[string]string
}

// handle serves an action. It takes a POST from this origin only, with the
// token when one is set, and a confirmation: the first POST renders a page
// asking to confirm, whose button posts again with confirm=yes. Then it
// does the action and goes back to the page named back, saying what it
// did.
func (d *dashboard) handle(back string, build func(*http.Request) (action, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if d.token != "" && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(d.token)) != 1 {
			http.Error(w, "wrong or missing DASHBOARD_TOKEN", http.StatusForbidden)
			return
		}
		a, err := build(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.PostForm.Get("confirm") != "yes" {
			fields := map[string]string{}
			for k := range r.PostForm {
				if k != "token" && k != "confirm" {
					fields[k] = r.PostForm.Get(k)
				}
			}
			data := d.pageData(r, strings.TrimPrefix(back, "/"))
			data.Confirm = &confirmView{Question: a.Question, Detail: a.Detail, Action: r.URL.Path, Fields: fields}
			d.render(w, http.StatusOK, "confirm.html", data)
			return
		}
		done, err := a.Do(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		d.app.Log.Info("dashboard action", "action", r.URL.Path, "done", done, "remote", r.RemoteAddr)
		http.Redirect(w, r, back+"?done="+url.QueryEscape(done), http.StatusSeeOther)
	}
}

// streamAction signals the stream workflow: pause, resume or stop.
func (d *dashboard) streamAction(r *http.Request) (action, error) {
	signal := r.PathValue("signal")
	id := workflows.StreamWorkflowID(d.topic)
	questions := map[string][2]string{
		workflows.SignalPause:  {"Pause the stream?", "The leases commit their open batch and stop fetching; readings wait in Kafka."},
		workflows.SignalResume: {"Resume the stream?", "Leases start again from the committed offsets."},
		workflows.SignalStop:   {"Stop the stream?", "It drains every partition up to its current end, then completes; start it again with starter stream start."},
	}
	q, ok := questions[signal]
	if !ok {
		return action{}, fmt.Errorf("unknown stream action %q", signal)
	}
	return action{Question: q[0], Detail: q[1] + " (" + id + ")", Do: func(ctx context.Context) (string, error) {
		tc, err := d.app.Temporal(ctx)
		if err == nil {
			err = tc.SignalWorkflow(ctx, id, "", signal, nil)
		}
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return "", errors.New("no running stream " + id + ": start it with starter stream start")
		}
		if err != nil {
			return "", fmt.Errorf("signal %s to %s: %w", signal, id, err)
		}
		return "sent " + signal + " to the stream; the state changes when the workflow reports it", nil
	}}, nil
}

// sameOrigin accepts a request whose Origin (or, without one, Referer) is
// this server, and browsers' Sec-Fetch-Site when they send it.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// workflowURL is the Temporal UI's list of a workflow id's runs.
func workflowURL(app *App, id string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows?query=%s", strings.TrimRight(app.Cfg.Temporal.UIURL, "/"),
		url.PathEscape(app.Cfg.Temporal.Namespace), url.QueryEscape(fmt.Sprintf("WorkflowId=%q", id)))
}

// sparkline renders values as the points of an SVG polyline in a w×h box,
// the largest value at the top.
func sparkline(points []historyPoint, field string, w, h float64) string {
	if len(points) < 2 {
		return ""
	}
	peak := 0.0
	value := func(p historyPoint) float64 {
		if field == "lag" {
			return float64(p.Lag)
		}
		return p.Rate
	}
	for _, p := range points {
		peak = max(peak, value(p))
	}
	if peak == 0 {
		peak = 1
	}
	var b strings.Builder
	for i, p := range points {
		x := w * float64(i) / float64(len(points)-1)
		y := h - h*value(p)/peak
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	return strings.TrimSpace(b.String())
}
